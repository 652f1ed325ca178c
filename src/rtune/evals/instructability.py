"""Judge-free instructability (the likelihood metric): does a model prefer each instruction's own reference response?

For held-out pairs (x_i, r_i), every instruction is put to the model in a prompt format (`chat` by
default, which for our IT and RT models, and base models without a template, is the paper's
inference template; a URIAL prompt for in-context cells) and the model scores candidate
responses by the log-probability of their tokens given that prompt: r_i itself and K responses
written for other instructions. An item counts as correct when r_i scores above every
distractor; its margin is r_i's score minus the best distractor's. No judge, no generation: it
runs offline in minutes and separates base, IT and RT models.

Three scores come out of the same log-probabilities; all are reported, `headline` picks one:
- `total` (default): the sum of the log-probs of the response's first N tokens
  (`max_response_tokens`, default 48). With every candidate cut to the same number of tokens the
  comparison is length-neutral: "which opening does the model expect after this instruction?".
  Responses shorter than N are scored whole (counted in `n_short_responses`; being shorter, they
  are favoured);
- `per_token`: that sum divided by the token count;
- `pmi`: the sum minus the same tokens' log-prob under the template with an empty instruction,
  i.e. how much *this* instruction raises the response's probability. On held-out sets whose
  topics differ widely it is near 100% for any decent model; its margin is still informative.

Scoring follows lm-eval: the prompt's trailing newline is scored with each response (the same
token for every candidate, so it shifts all scores of an item alike); each prompt runs through
the model once and its key/value cache is shared by its candidates (`ChoiceScorer`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rtune.data.records import Record
from rtune.errors import RtuneError
from rtune.evals.choice_scorer import ChoiceScorer, ScoreRequest
from rtune.progress import SILENT, Progress
from rtune.prompting import PromptFormat, parse_format
from rtune.stats import Interval, bootstrap_mean

Variant = Literal["total", "per_token", "pmi"]
VARIANTS: tuple[str, ...] = ("total", "per_token", "pmi")


class LikelihoodSettings(BaseModel):
    """What decides the metric's numbers (the CLI's and the pipeline's defaults both come from here)."""

    model_config = ConfigDict(extra="forbid")

    distractors: int | None = Field(
        None, ge=1, description="other responses per item, sampled with --seed (default: all others)"
    )
    seed: int = Field(0, description="distractor sampling and bootstrap seed")
    max_response_tokens: int | None = Field(
        48, ge=0, description="score each response's first N tokens, so all have the same length (0: whole responses)"
    )
    headline: Variant = Field("total", description="score reported as accuracy/margin: total, per_token or pmi")
    prompt: str = Field(
        "chat",
        description="how instructions are put to the model: chat (its template, Tulu's when it has "
        "none), tulu, plain, or a URIAL mode or prompt file (rtune.prompting)",
    )
    batch_size: int = Field(8, ge=1, description="prompts per forward pass")
    bootstrap_samples: int = Field(2000, ge=100)

    @field_validator("max_response_tokens")
    @classmethod
    def _zero_means_whole(cls, value: int | None) -> int | None:
        return value or None


class VariantSummary(BaseModel):
    accuracy: Interval
    margin: Interval  # mean over items of (reference score - best distractor score)


class ItemResult(BaseModel):
    id: str
    instruction: str
    n_tokens: int  # tokens scored for the reference response
    reference: float  # log p(r_i | x_i)
    reference_unconditional: float  # log p(r_i | empty instruction)
    distractors: dict[str, float]  # id of r_j -> log p(r_j | x_i)
    correct: dict[str, bool]  # per variant
    margin: dict[str, float]  # per variant


class LikelihoodResult(BaseModel):
    model: str
    records: str
    n_items: int
    n_distractors: int
    n_short_responses: int  # responses with fewer tokens than max_response_tokens (scored whole)
    settings: LikelihoodSettings
    headline: Variant
    accuracy: float  # headline variant, repeated here for tables
    margin: float
    chance_accuracy: float
    variants: dict[str, VariantSummary]
    items: list[ItemResult]


@dataclass(frozen=True)
class Candidate:
    id: str
    text: str
    n_tokens: int


def truncate_responses(tokenizer, records: list[Record], max_tokens: int | None) -> list[Candidate]:
    """Each response cut after its first `max_tokens` tokens (at the token's last character)."""
    candidates = []
    for record in records:
        encoded = tokenizer(record.completion, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if not offsets:
            raise RtuneError(f"record '{record.id}': response encodes to no tokens")
        keep = len(offsets) if max_tokens is None else min(max_tokens, len(offsets))
        text = record.completion if keep == len(offsets) else record.completion[: offsets[keep - 1][1]]
        candidates.append(Candidate(record.id, text, keep))
    return candidates


def choose_distractors(n_items: int, k: int | None, seed: int) -> list[list[int]]:
    """For item i, the indices of the other responses it is compared with (all, or K seeded)."""
    rng = random.Random(seed)
    chosen = []
    for i in range(n_items):
        others = [j for j in range(n_items) if j != i]
        chosen.append(others if k is None or k >= len(others) else sorted(rng.sample(others, k)))
    return chosen


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[start : start + size] for start in range(0, len(indices), size)]


def score_matrix(
    scorer: ChoiceScorer,
    prompting: PromptFormat,
    records: list[Record],
    candidates: list[Candidate],
    distractors: list[list[int]],
    max_logit_positions: int,
    progress: Progress = SILENT,
) -> tuple[dict, list[float]]:
    """log p(r_j | x_i) for every (i, j) compared, and log p(r_j | empty instruction) for every j.

    A prompt's candidates are split into groups whose logits fit `max_logit_positions`, so a
    262k-vocabulary model never holds more than that many rows of logits at once.
    """
    longest = max(c.n_tokens for c in candidates) + 1
    group = max(1, max_logit_positions // longest)
    prompts = [prompting.text(record.prompt, scorer.tokenizer) for record in records] + [
        prompting.text("", scorer.tokenizer)
    ]
    wanted = [[i, *distractors[i]] for i in range(len(records))] + [list(range(len(records)))]
    requests, keys = [], []
    for row, (prompt, columns) in enumerate(zip(prompts, wanted, strict=False)):
        for part in _chunks(columns, group):
            requests.append(ScoreRequest(prompt, tuple(candidates[j].text for j in part)))
            keys.append((row, part))
    progress.start("score", len(requests))
    scores = scorer.score(requests, progress.advance)
    matrix: dict[tuple[int, int], float] = {}
    for (row, part), choice_scores in zip(keys, scores, strict=False):
        for j, choice in zip(part, choice_scores, strict=False):
            matrix[(row, j)] = choice.logprob
    unconditional = [matrix.pop((len(records), j)) for j in range(len(records))]
    return matrix, unconditional


def variant_score(variant: str, logprob: float, unconditional: float, n_tokens: int) -> float:
    if variant == "total":
        return logprob
    if variant == "per_token":
        return logprob / n_tokens
    return logprob - unconditional


def summarise(
    model: str,
    records_path: str,
    records: list[Record],
    candidates: list[Candidate],
    distractors: list[list[int]],
    matrix: dict,
    unconditional: list[float],
    settings: LikelihoodSettings,
) -> LikelihoodResult:
    items, per_variant = [], {v: ([], []) for v in VARIANTS}
    for i, record in enumerate(records):
        correct, margin = {}, {}
        for variant in VARIANTS:
            score = {
                j: variant_score(variant, matrix[(i, j)], unconditional[j], candidates[j].n_tokens)
                for j in (i, *distractors[i])
            }
            margin[variant] = score[i] - max(score[j] for j in distractors[i])
            correct[variant] = margin[variant] > 0
            per_variant[variant][0].append(float(correct[variant]))
            per_variant[variant][1].append(margin[variant])
        items.append(
            ItemResult(
                id=record.id,
                instruction=record.prompt,
                n_tokens=candidates[i].n_tokens,
                reference=matrix[(i, i)],
                reference_unconditional=unconditional[i],
                distractors={candidates[j].id: matrix[(i, j)] for j in distractors[i]},
                correct=correct,
                margin=margin,
            )
        )
    variants = {
        v: VariantSummary(
            accuracy=bootstrap_mean(acc, settings.bootstrap_samples, settings.seed),
            margin=bootstrap_mean(mar, settings.bootstrap_samples, settings.seed),
        )
        for v, (acc, mar) in per_variant.items()
    }
    n_distractors = len(distractors[0])
    headline = variants[settings.headline]
    cap = settings.max_response_tokens
    short = sum(cap is not None and c.n_tokens < cap for c in candidates)
    return LikelihoodResult(
        model=model,
        records=records_path,
        n_items=len(records),
        n_distractors=n_distractors,
        n_short_responses=short,
        settings=settings,
        headline=settings.headline,
        accuracy=headline.accuracy.value,
        margin=headline.margin.value,
        chance_accuracy=1 / (n_distractors + 1),
        variants=variants,
        items=items,
    )


def evaluate_likelihood(
    model_spec: str,
    records: list[Record],
    settings: LikelihoodSettings,
    records_label: str = "",
    progress: Progress = SILENT,
    max_logit_positions: int = 1024,
) -> LikelihoodResult:
    """Load the model, score every compared (instruction, response) pair, and summarise."""
    from rtune.models import load_model

    if len(records) < 2:
        raise RtuneError(
            f"{records_label or 'records'}: the likelihood metric needs at least 2 records, got {len(records)}"
        )
    if len({r.id for r in records}) != len(records):
        raise RtuneError(f"{records_label or 'records'}: record ids must be unique")
    prompting = parse_format(settings.prompt)
    model, tokenizer = load_model(model_spec)
    candidates = truncate_responses(tokenizer, records, settings.max_response_tokens)
    distractors = choose_distractors(len(records), settings.distractors, settings.seed)
    scorer = ChoiceScorer(model, tokenizer, batch_size=settings.batch_size, max_logit_positions=max_logit_positions)
    matrix, unconditional = score_matrix(
        scorer, prompting, records, candidates, distractors, max_logit_positions, progress
    )
    return summarise(model_spec, records_label, records, candidates, distractors, matrix, unconditional, settings)


class LikelihoodRun(LikelihoodSettings):
    """One evaluation: the settings plus the model, the held-out pairs and where to write the result."""

    model: str = Field(
        description="registered name (gemma-3-270m), local folder (a trained run's merged/), .gguf or hub id"
    )
    records: str = Field(
        "heldout",
        description="held-out pairs: a file in any layout `rtune data build` reads (an AlpacaEval "
        "outputs file too), a named dataset with reference answers, or the packaged held-out set (heldout)",
    )
    data_dir: Path | None = Field(
        None, description="local datasets for named records (default: $RTUNE_DATA_DIR, else the hub)"
    )
    limit: int | None = Field(None, ge=2, description="only the first N records")
    out: Path | None = Field(None, description="write the full result (per-item scores included) as JSON here")


def run(settings: LikelihoodRun, progress: Progress = SILENT) -> LikelihoodResult:
    """Read the pairs, score them with the model, write the result when asked."""
    from rtune.data import registry
    from rtune.data.records import keep_nonempty, read_records
    from rtune.data.sources import build_records
    from rtune.io import atomic_write_json, check_output

    if settings.out is not None:
        check_output(settings.out, inputs=[settings.records])
    if settings.records in registry.DATASETS and registry.get(settings.records).packaged is not None:
        records = read_records(registry.local_file(settings.records, None)).records
    else:  # a named set, or a file in any layout `rtune data build` reads (AlpacaEval outputs files too)
        records = keep_nonempty(
            build_records(settings.records, settings.data_dir).records, strict=False, where=settings.records
        ).records
    records = records[: settings.limit]
    result = evaluate_likelihood(
        settings.model,
        records,
        LikelihoodSettings(**settings.model_dump(include=set(LikelihoodSettings.model_fields))),
        settings.records,
        progress,
    )
    if settings.out is not None:
        atomic_write_json(settings.out, result.model_dump(mode="json"))
    return result


def format_summary(result: LikelihoodResult) -> str:
    lines = [
        f"{result.model}: {result.n_items} items, {result.n_distractors} distractors each "
        f"(chance accuracy {result.chance_accuracy:.3f})"
        + (
            f"; {result.n_short_responses} responses shorter than "
            f"{result.settings.max_response_tokens} tokens, scored whole"
            if result.n_short_responses
            else ""
        )
    ]
    for name, summary in result.variants.items():
        a, m = summary.accuracy, summary.margin
        mark = " (headline)" if name == result.headline else ""
        lines.append(
            f"  {name:9s} accuracy {a.value:.3f} [{a.ci_low:.3f}, {a.ci_high:.3f}]  "
            f"margin {m.value:+.3f} [{m.ci_low:+.3f}, {m.ci_high:+.3f}]{mark}"
        )
    return "\n".join(lines)
