"""AlpacaEval 2's annotator (`weighted_alpaca_eval_gpt4_turbo`), read from the installed alpaca-eval package.

rtune ships none of alpaca_eval's text: the annotator's config and prompt file are read from the
package at run time (without importing it), and this module does with them what alpaca_eval does,
step by step, so the judge gets the request alpaca_eval would send
(tests/test_fidelity_alpaca_eval.py runs both against one server and compares):
- order: output_1 (reference) and output_2 (model) swap places when a coin seeded with
  "is_switched_outputs" + instruction + seed says so;
- prompt: each `{placeholder}` replaced once, in order of first appearance (one after the other, so
  a placeholder spelled inside an instruction gets filled too), stripped, split into ChatML messages;
- request: the config's completion settings (one token, temperature 1, top-5 log-probabilities);
- reading: P(m) / (P(m) + P(M)) among the returned alternatives; preference 2 − that in the shown
  order, 3 − x to undo a swap; identical outputs get 1.5 without a call.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import random
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from rtune.errors import RtuneError
from rtune.io import stable_hash

PACKAGE = "alpaca_eval"
PINNED = "0.6.6"
ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
INSTALL = f'pip install "rtune[alpaca-eval]" (alpaca-eval=={PINNED})'
START, END = "<|im_start|>", "<|im_end|>"
SWITCH_SEED = "is_switched_outputs"  # the name alpaca_eval seeds its order coin with
# What this module reproduces (setting: (value wanted, alpaca_eval's default)); other configs are refused.
EXPECTED = {
    "fn_completions": ("openai_completions", "openai_completions"),
    "fn_completion_parser": ("logprob_parser", "regex_parser"),
    "batch_size": (1, 1),
}
KNOWN_KEYS = {"prompt_template", "completions_kwargs", "completion_parser_kwargs", "completion_key", *EXPECTED}
KNOWN_COMPLETION_KWARGS = {"model_name", "max_tokens", "temperature", "logprobs", "top_logprobs"}


class AlpacaEvalAnnotator(BaseModel):
    """One alpaca_eval annotator config, as read from the installed package."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str  # of the installed alpaca-eval
    prompt_template: str
    max_tokens: int
    temperature: float
    top_logprobs: int
    numerator_token: str  # "the output shown first wins"
    denominator_tokens: tuple[str, ...]
    leaderboard_judge: str  # the model the config names: what AlpacaEval 2's leaderboard numbers come from

    @property
    def label(self) -> str:
        return f"alpaca_eval=={self.version}/{self.name}"

    def identity(self) -> dict:
        """What decides its results, for item keys and stage hashes."""
        return {"annotator": self.name, "alpaca_eval": self.version, "prompt": stable_hash(self.prompt_template)}


def installed_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _configs_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise RtuneError(f"AlpacaEval's annotator needs the alpaca-eval package, which is not installed: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0]) / "evaluators_configs"


def load_annotator(name: str = ANNOTATOR) -> AlpacaEvalAnnotator:
    """The annotator config `name` and its prompt file, from the installed alpaca-eval."""
    version = installed_version()
    if version is None:
        raise RtuneError(f"AlpacaEval's annotator needs the alpaca-eval package, which is not installed: {INSTALL}")
    root = _configs_dir()
    path = root / name / "configs.yaml"
    if not path.is_file():
        raise RtuneError(f"alpaca-eval {version} has no annotator config {name} ({path})")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))[name]
    completion, parser = config.get("completions_kwargs", {}), config.get("completion_parser_kwargs", {})
    odd = _unsupported(config, completion, parser)
    if odd:
        raise RtuneError(
            f"{path}: rtune reproduces only single-token log-probability annotators; "
            f"this config also asks for {', '.join(odd)}"
        )
    return AlpacaEvalAnnotator(
        name=name,
        version=version,
        prompt_template=(root / config["prompt_template"]).read_text(encoding="utf-8"),
        max_tokens=completion["max_tokens"],
        temperature=completion["temperature"],
        top_logprobs=completion["top_logprobs"],
        numerator_token=parser["numerator_token"],
        denominator_tokens=tuple(parser["denominator_tokens"]),
        leaderboard_judge=completion["model_name"],
    )


def _unsupported(config: dict, completion: dict, parser: dict) -> list[str]:
    """The settings of a config that this module would not reproduce."""
    odd = [
        f"{key}: {config.get(key, default)}"
        for key, (wanted, default) in EXPECTED.items()
        if config.get(key, default) != wanted
    ]
    odd += sorted(set(config) - KNOWN_KEYS) + sorted(set(completion) - KNOWN_COMPLETION_KWARGS)
    if parser.get("is_binarize", True):
        odd.append("is_binarize: true")
    if not completion.get("logprobs"):
        odd.append("logprobs: false")
    return odd


def model_shown_first(seed: int, instruction: str) -> bool:
    """alpaca_eval's order coin: True when it swaps the pair, so the model's output fills `{output_1}`."""
    return random.Random(SWITCH_SEED + instruction + str(seed)).choices([False, True], k=1)[0]


def format_prompt(template: str, values: dict[str, str]) -> str:
    """Each `{name}` of the template replaced once, one name after the other, in order of first appearance."""
    prompt = template
    for name in dict.fromkeys(re.findall(r"{([^ \s]+?)}", template)):
        prompt = prompt.replace("{" + name + "}", str(values[name]), 1)
    return prompt


def chat_messages(prompt: str) -> tuple[dict, ...]:
    """A ChatML prompt as chat messages: one per `<|im_start|>role` block, its content stripped."""
    messages = []
    for block in prompt.strip().split(START)[1:]:
        role, _, rest = block.partition("\n")
        messages.append({"content": rest.split(END, 1)[0].strip(), "role": role.strip()})
    return tuple(messages)


def messages_for(
    annotator: AlpacaEvalAnnotator, instruction: str, reference: str, output: str, swapped: bool
) -> tuple[dict, ...]:
    first, second = (output, reference) if swapped else (reference, output)
    prompt = format_prompt(
        annotator.prompt_template, {"instruction": instruction, "output_1": first, "output_2": second}
    )
    return chat_messages(prompt)


def preference(annotator: AlpacaEvalAnnotator, top: dict[str, float], swapped: bool) -> float | None:
    """The AlpacaEval preference from the first token's alternatives; None when neither token is among them."""
    import numpy as np
    from scipy.special import logsumexp  # what alpaca_eval computes with, so the numbers agree to the bit

    wanted = (*annotator.denominator_tokens, annotator.numerator_token)
    found = {token: logprob for token, logprob in top.items() if token in wanted}
    if not found:
        return None
    numerator = found.get(annotator.numerator_token, -math.inf)
    denominator = logsumexp([found.get(token, -math.inf) for token in annotator.denominator_tokens])
    shown_order = 2 - float(np.exp(numerator - denominator))
    return 3 - shown_order if swapped else shown_order
