"""Refusal evaluation on AdvBench, HarmBench, MaliciousInstruct and XSTest (paper §5, notes §2.6).

A model (or an existing outputs file) answers each prompt; a refusal judge labels each answer;
the report gives, per set, the refusal rate on harmful prompts and, on XSTest's safe prompts,
the false-refusal rate, each with a seeded bootstrap 95% CI.

- `sets`: the benchmarks as items, and the seeded per-set sample.
- `outputs`: answers, generated resumably or matched from an outputs file.
- `judging`: verdicts, logged per item.
- `rates`: rates, intervals and the summary; `report`: report.md.
- `evaluation`: `SafetyRun` (every setting) and `run` (the whole stage).

Model outputs to harmful prompts are harmful material: they are written only inside the run
directory; the console sees counts and rates, the report at most short truncated examples.
"""

from rtune.evals.safety.evaluation import SafetyRun, run
from rtune.evals.safety.outputs import match_outputs, output_rows
from rtune.evals.safety.rates import Rate, SafetySummary, SetSummary, summarise
from rtune.evals.safety.sets import SET_TITLES, SETS, SafetyItem, load_items, parse_sets

__all__ = [
    "SETS",
    "SET_TITLES",
    "Rate",
    "SafetyItem",
    "SafetyRun",
    "SafetySummary",
    "SetSummary",
    "load_items",
    "match_outputs",
    "output_rows",
    "parse_sets",
    "run",
    "summarise",
]
