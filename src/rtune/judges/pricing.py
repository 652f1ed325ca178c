"""What a judge run cost: tokens counted from every fresh call, priced when the judge is in the table.

Only answers the model actually produced count as spent; answers served from the cache are
counted apart, so a rerun reports 0 calls and $0.
"""

from __future__ import annotations

from pydantic import BaseModel

from rtune.generation import GenerationResult, parse_spec

# USD per one million tokens (input, output) on the OpenAI API, standard tier (no batch, no
# cached-input discount). Source: OpenAI's pricing page (platform.openai.com/docs/pricing) as
# published in 2025; the gpt-4o and gpt-4o-mini rows re-checked 2026-11-26 against a copy of that
# page. Prices change: check them before relying on a cost estimate. Models served elsewhere (a
# local vLLM server, an in-process model) have no price here and are reported as unpriced.
PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4o-2024-08-06": (2.50, 10.00),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini-2024-07-18": (0.15, 0.60),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1-2025-04-14": (2.00, 8.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-1106-preview": (10.00, 30.00),  # AlpacaEval 2's default annotator
    "gpt-4-turbo-2024-04-09": (10.00, 30.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4-0613": (30.00, 60.00),
}


def price_per_million(judge_spec: str) -> tuple[float, float] | None:
    """(input, output) USD per million tokens for a judge on the OpenAI API itself, else None."""
    spec = parse_spec(judge_spec)
    if spec.backend != "openai" or spec.base_url is not None:
        return None
    return PRICES_PER_MILLION.get(spec.model)


class _Counts(BaseModel):
    calls: int = 0
    cached: int = 0
    unparseable: int = 0  # answers that could not be read (each one retried, never cached)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Usage(_Counts):
    """Calls and tokens of one judge run; `cached` answers cost nothing and are not in the token sums."""

    def record(self, result: GenerationResult) -> None:
        if result.cached:
            self.cached += 1
            return
        self.calls += 1
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens

    def cost_usd(self, judge_spec: str) -> float | None:
        prices = price_per_million(judge_spec)
        if prices is None:
            return None
        return (self.prompt_tokens * prices[0] + self.completion_tokens * prices[1]) / 1e6

    def report(self, judge_spec: str) -> UsageReport:
        return UsageReport(
            **self.model_dump(), cost_usd=self.cost_usd(judge_spec), priced=price_per_million(judge_spec) is not None
        )


class UsageReport(_Counts):
    """Usage as recorded in run.json and summary.json: with its cost, None when the judge has no price entry."""

    cost_usd: float | None
    priced: bool

    def describe(self) -> str:
        money = f"${self.cost_usd:.4f}" if self.cost_usd is not None else "no price entry"
        return (
            f"{self.calls} calls, {self.cached} cached, {self.unparseable} unparseable answers retried; "
            f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens ({money})"
        )
