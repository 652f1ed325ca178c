"""`rtune eval core`: lm-eval's core capability benchmarks, computed in-process with the same prompts and metrics.

Modules, in the order a run uses them: `settings` (what is asked), `tasks` (the datasets as
prompt-ready items), `prompts` (plain or chat-template contexts), `session` (model, tokenizer and
saved units shared by a run), `multiple_choice` and `gsm8k` (the two kinds of task), `results`
(lm-eval's metrics, standard errors and document), `report` (its typed view), `evaluate` (`run`,
the whole stage), and `lm_eval` (the same run through lm-evaluation-harness itself).
"""

from rtune.evals.core.evaluate import run
from rtune.evals.core.report import CoreReport
from rtune.evals.core.settings import CoreEvalSettings

__all__ = ["CoreEvalSettings", "CoreReport", "run"]
