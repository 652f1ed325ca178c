"""How a pairwise judge is asked and how its answer is read, by name: `alpaca_eval_2` or `rtune`.

- `alpaca_eval_2`: AlpacaEval 2's own annotator (`weighted_alpaca_eval_gpt4_turbo`, the paper's),
  read from the installed alpaca-eval package (`rtune.judges.alpaca_eval_annotator`); its win rates
  compare with the paper's and the leaderboard's. The default when alpaca-eval is installed.
- `rtune`: our own prompt (A/B identifiers, an explicit "length is not quality" rule, nonce-marked
  blocks) read by log-probabilities (`weighted`) or from a short text verdict (`parsed`, for judges
  without log-probabilities).

Both give AlpacaEval preferences (1 = reference preferred, 2 = model preferred) with the display
order undone; the order coin is each protocol's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from rtune.errors import RtuneError
from rtune.generation import DecodingParams, GenerationRequest, GenerationResult
from rtune.judges import alpaca_eval_annotator as alpaca
from rtune.judges.caller import attempt_params
from rtune.judges.pairs import Pair, parsed_reading, weighted_reading
from rtune.judges.pairs import model_shown_first as rtune_shown_first
from rtune.judges.pairs import preference as rtune_preference
from rtune.judges.prompts import PROMPT_VERSION, pairwise_messages

Annotator = Literal["alpaca_eval_2", "rtune"]
Mode = Literal["weighted", "parsed"]


def resolve_annotator(annotator: Annotator | None, mode: Mode) -> Annotator:
    """The annotator to use: the one named, else AlpacaEval 2's when alpaca-eval is installed (and the
    judge is read by log-probabilities, which is all it does), else ours."""
    if annotator is None:
        return "alpaca_eval_2" if mode == "weighted" and alpaca.installed_version() is not None else "rtune"
    if annotator == "alpaca_eval_2" and mode != "weighted":
        raise RtuneError("AlpacaEval 2's annotator reads log-probabilities; mode parsed needs annotator rtune")
    return annotator


class PairwiseProtocol(Protocol):
    version: str  # recorded with every annotation
    identity: dict  # what decides its answers: part of each item's key

    def shown_first(self, pair: Pair) -> bool: ...  # True: the model's output is shown first

    def fixed(self, pair: Pair) -> float | None: ...  # a preference known without asking

    def request(self, pair: Pair, attempt: int) -> GenerationRequest: ...

    def read(self, pair: Pair, result: GenerationResult) -> float | None: ...  # the preference; None: unreadable


@dataclass(frozen=True)
class RtuneProtocol:
    mode: Mode
    seed: int
    top_logprobs: int
    parsed_max_new_tokens: int

    @property
    def version(self) -> str:
        return PROMPT_VERSION

    @property
    def identity(self) -> dict:
        return {"mode": self.mode, "prompt": PROMPT_VERSION}

    def shown_first(self, pair: Pair) -> bool:
        return rtune_shown_first(self.seed, pair.instruction)

    def fixed(self, pair: Pair) -> float | None:
        return None

    def request(self, pair: Pair, attempt: int) -> GenerationRequest:
        first, second = (pair.output, pair.reference) if self.shown_first(pair) else (pair.reference, pair.output)
        if self.mode == "weighted":
            params = DecodingParams(max_new_tokens=1, temperature=0.0, top_logprobs=self.top_logprobs)
        else:
            params = DecodingParams(max_new_tokens=self.parsed_max_new_tokens, temperature=0.0)
        return GenerationRequest(
            messages=pairwise_messages(pair.instruction, first, second), params=attempt_params(params, attempt)
        )

    def read(self, pair: Pair, result: GenerationResult) -> float | None:
        p_first_wins = (weighted_reading if self.mode == "weighted" else parsed_reading)(result)
        return None if p_first_wins is None else rtune_preference(p_first_wins, self.shown_first(pair))


@dataclass(frozen=True)
class AlpacaEval2Protocol:
    seed: int
    annotator: alpaca.AlpacaEvalAnnotator = field(default_factory=alpaca.load_annotator)

    @property
    def version(self) -> str:
        return self.annotator.label

    @property
    def identity(self) -> dict:
        return self.annotator.identity()

    def shown_first(self, pair: Pair) -> bool:
        return alpaca.model_shown_first(self.seed, pair.instruction)

    def fixed(self, pair: Pair) -> float | None:
        return 1.5 if pair.output == pair.reference else None  # alpaca_eval never asks about identical outputs

    def request(self, pair: Pair, attempt: int) -> GenerationRequest:
        a = self.annotator
        params = DecodingParams(max_new_tokens=a.max_tokens, temperature=a.temperature, top_logprobs=a.top_logprobs)
        messages = alpaca.messages_for(a, pair.instruction, pair.reference, pair.output, self.shown_first(pair))
        return GenerationRequest(messages=messages, params=attempt_params(params, attempt))

    def read(self, pair: Pair, result: GenerationResult) -> float | None:
        if not result.logprobs:
            if result.text.strip():
                raise RtuneError(
                    "the judge returned no log-probabilities, which AlpacaEval 2's annotator reads; "
                    "use --annotator rtune --mode parsed for this judge"
                )
            return None
        return alpaca.preference(self.annotator, result.logprobs[0].top, self.shown_first(pair))


def make_protocol(
    annotator: Annotator, mode: Mode, seed: int, top_logprobs: int, parsed_max_new_tokens: int
) -> PairwiseProtocol:
    """The named annotator (AlpacaEval 2's reads log-probabilities only: `mode` is rtune's)."""
    if annotator == "rtune":
        return RtuneProtocol(mode, seed, top_logprobs, parsed_max_new_tokens)
    return AlpacaEval2Protocol(seed)
