"""Refusal evaluation on AdvBench, HarmBench, MaliciousInstruct and XSTest (paper §5, notes §2.6).

A model (or an existing outputs file) answers each prompt; a refusal judge labels each answer;
the report gives, per set, the refusal rate on harmful prompts and, on XSTest's safe prompts,
the false-refusal rate, each with a seeded bootstrap 95% CI. Conventions follow the paper:
HarmBench's rate is the mean of its standard and contextual rates; the average is the mean over
the four harmful sets; an unclassified judge answer counts as a non-refusal on a harmful prompt
and as a false refusal on a safe one (and is counted in the report).

Model outputs to harmful prompts are harmful material: they are written only inside the run
directory; the console sees counts and rates, the report at most short truncated examples.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel

from rtune.data.sources import read_rows, resolve_data_dir
from rtune.errors import RtuneError
from rtune.io import append_jsonl, atomic_write_json, atomic_write_text, read_json, read_jsonl, sha256_file
from rtune.judges.refusal import RefusalCase, RefusalJudge

SETS: tuple[str, ...] = ("advbench", "harmbench", "malicious_instruct", "xstest")
SET_TITLES = {"advbench": "AdvBench", "harmbench": "HarmBench", "malicious_instruct": "MaliciousInstruct", "xstest": "XSTest"}
PromptFormat = Literal["chat", "tulu"]
BOOTSTRAP_SAMPLES = 10_000
EXAMPLE_CHARS = 80
JUDGE_CHUNK = 64  # items judged between two appends to results.jsonl


class SafetyItem(BaseModel):
    id: str
    set: str
    subset: str  # harmful | standard | contextual | safe | unsafe
    prompt: str
    harmful: bool  # True: a refusal is the wanted answer; False (XSTest safe): compliance is
    category: str = ""


# --------------------------------------------------------------------------------------------
# Sets: local copies laid out as the shared data dir, else the walledai hub mirrors the paper used
# --------------------------------------------------------------------------------------------

def _local(data_dir: Path, relative: str) -> Path:
    path = data_dir / relative
    if not path.exists():
        raise RtuneError(f"{path}: not found (expected the benchmark file {relative} under the data dir)")
    return path


def _hub(dataset_id: str, config: str | None = None) -> list[dict]:
    """All rows of a small hub dataset, whatever its split is called (walledai mirrors use train or test)."""
    from datasets import load_dataset

    try:
        splits = load_dataset(dataset_id, config)
    except Exception as exc:  # the hub raises many types; one message covers offline, gated, missing
        raise RtuneError(f"could not load '{dataset_id}' from the Hugging Face hub ({type(exc).__name__}: {exc}); "
                         "offline, pass --data-dir with local copies") from exc
    return [dict(row) for split in splits.values() for row in split]


def _strip_quotes(text: str) -> str:
    text = text.strip()
    return text[1:-1].strip() if len(text) > 1 and text[0] == text[-1] == '"' else text


def load_advbench(data_dir: Path | None) -> list[SafetyItem]:
    rows = read_rows(_local(data_dir, "advbench/harmful_behaviors.csv")) if data_dir else _hub("walledai/AdvBench")
    field = "goal" if data_dir else "prompt"
    return [SafetyItem(id=f"advbench-{i}", set="advbench", subset="harmful", prompt=_strip_quotes(row[field]), harmful=True)
            for i, row in enumerate(rows)]


def harmbench_prompt(behavior: str, context: str | None) -> str:
    """Contextual behaviours carry their context first, as the paper builds them."""
    return f"{context}\n\n---\n\n{behavior}" if context else behavior


def load_harmbench(data_dir: Path | None) -> list[SafetyItem]:
    """Standard (200) and contextual (100) behaviours; copyright behaviours are not refusal tests."""
    if data_dir:
        rows = read_rows(_local(data_dir, "harmbench/harmbench_behaviors_text_all.csv"))
        pairs = [(row["FunctionalCategory"], row["Behavior"], row.get("ContextString") or None, row.get("SemanticCategory", ""))
                 for row in rows]
    else:
        pairs = [(subset, row["prompt"], row.get("context") or None, row.get("category", ""))
                 for subset in ("standard", "contextual") for row in _hub("walledai/HarmBench", subset)]
    items, counters = [], defaultdict(int)
    for subset, behavior, context, category in pairs:
        if subset not in ("standard", "contextual"):
            continue
        items.append(SafetyItem(id=f"harmbench-{subset}-{counters[subset]}", set="harmbench", subset=subset,
                                prompt=harmbench_prompt(behavior, context if subset == "contextual" else None),
                                harmful=True, category=category))
        counters[subset] += 1
    return items


def load_malicious_instruct(data_dir: Path | None) -> list[SafetyItem]:
    if data_dir:
        path = _local(data_dir, "malicious_instruct/MaliciousInstruct.txt")
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        prompts = [row["prompt"] for row in _hub("walledai/MaliciousInstruct")]
    return [SafetyItem(id=f"malicious_instruct-{i}", set="malicious_instruct", subset="harmful", prompt=p, harmful=True)
            for i, p in enumerate(prompts)]


def load_xstest(data_dir: Path | None) -> list[SafetyItem]:
    """XSTest v2: 250 safe prompts (compliance wanted) and 200 unsafe contrasts (refusal wanted)."""
    rows = read_rows(_local(data_dir, "xstest/xstest_prompts.csv")) if data_dir else _hub("walledai/XSTest")
    items = []
    for i, row in enumerate(rows):
        label = str(row["label"]).strip().lower()
        if label not in ("safe", "unsafe"):
            raise RtuneError(f"XSTest row {i + 1}: label must be safe or unsafe, got '{row['label']}'")
        items.append(SafetyItem(id=f"xstest-{i}", set="xstest", subset=label, prompt=row["prompt"],
                                harmful=label == "unsafe", category=str(row.get("type", ""))))
    return items


LOADERS: dict[str, Callable[[Path | None], list[SafetyItem]]] = {
    "advbench": load_advbench, "harmbench": load_harmbench,
    "malicious_instruct": load_malicious_instruct, "xstest": load_xstest,
}


def parse_sets(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in SETS]
    if unknown or not names:
        raise RtuneError(f"--sets: unknown set '{unknown[0] if unknown else text}'; choose from {', '.join(SETS)}")
    return names


def sample_items(items: list[SafetyItem], limit: int | None, seed: int) -> list[SafetyItem]:
    """At most `limit` items, spread over the subsets in proportion to their size (largest remainder), seeded.

    A plain head would give XSTest's first rows only (all safe); proportional sampling keeps both
    halves. The kept items stay in file order.
    """
    import random

    if limit is None or limit >= len(items):
        return items
    by_subset: dict[str, list[SafetyItem]] = defaultdict(list)
    for item in items:
        by_subset[item.subset].append(item)
    quotas = {name: limit * len(group) / len(items) for name, group in by_subset.items()}
    counts = {name: int(quota) for name, quota in quotas.items()}
    for name in sorted(quotas, key=lambda n: (counts[n] - quotas[n], n))[: limit - sum(counts.values())]:
        counts[name] += 1
    rng = random.Random(seed)
    kept = {item.id for name, group in sorted(by_subset.items()) for item in rng.sample(group, counts[name])}
    return [item for item in items if item.id in kept]


def load_items(sets: tuple[str, ...], data_dir: str | Path | None, limit: int | None, seed: int) -> list[SafetyItem]:
    resolved = resolve_data_dir(data_dir)
    return [item for name in sets for item in sample_items(LOADERS[name](resolved), limit, seed)]


# --------------------------------------------------------------------------------------------
# Outputs: generated here (resumable) or read from an AlpacaEval-style file
# --------------------------------------------------------------------------------------------

def _set_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def match_outputs(items: list[SafetyItem], path: str | Path) -> dict[str, str]:
    """Outputs for `items` from a JSON list of {instruction, output[, set|dataset][, id]}.

    Rows are matched by our item id when they carry one, else by (set, instruction) — the set
    field is optional and compared loosely ("MaliciousInstruct" = "malicious_instruct").
    """
    rows = read_json(path)
    if not isinstance(rows, list):
        raise RtuneError(f"{path}: expected a JSON list of {{instruction, output}} objects")
    by_id: dict[str, str] = {}
    by_prompt: dict[tuple[str, str], str] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not isinstance(row.get("instruction"), str) or not isinstance(row.get("output"), str):
            raise RtuneError(f"{path}: item {number}: expected an object with string fields 'instruction' and 'output'")
        if row.get("id") is not None:
            by_id[str(row["id"])] = row["output"]
        set_name = _set_key(str(row.get("set") or row.get("dataset") or ""))
        key = (set_name, row["instruction"].strip())
        if by_prompt.get(key, row["output"]) != row["output"]:
            raise RtuneError(f"{path}: item {number}: instruction repeated with a different output")
        by_prompt[key] = row["output"]
        by_prompt.setdefault(("", key[1]), row["output"])
    outputs, missing = {}, []
    for item in items:
        prompt = item.prompt.strip()
        found = by_id.get(item.id, by_prompt.get((_set_key(item.set), prompt), by_prompt.get(("", prompt))))
        if found is None:
            missing.append(item)
        else:
            outputs[item.id] = found
    if missing:
        raise RtuneError(f"{path}: no output for {len(missing)} of {len(items)} prompts (first: {missing[0].id}); "
                         "choose the sets the file covers with --sets")
    return outputs


def generation_request(item: SafetyItem, prompt_format: PromptFormat, max_new_tokens: int):
    """chat: the model's own chat template (Tulu when it has none); tulu: the paper's raw Tulu prompt."""
    from rtune.generation.base import DecodingParams, GenerationRequest
    from rtune.templates import inference_prompt

    params = DecodingParams(max_new_tokens=max_new_tokens)
    if prompt_format == "tulu":
        return GenerationRequest(prompt=inference_prompt(item.prompt), params=params)
    return GenerationRequest(messages=({"role": "user", "content": item.prompt},), params=params)


def read_log(path: Path) -> list[dict]:
    """Rows of a resumable per-item log (a line cut short by a crash is ignored; the next append removes it)."""
    return read_jsonl(path, tolerate_truncated_tail=True) if path.exists() else []


def generate_outputs(items: list[SafetyItem], generator, log: Path, prompt_format: PromptFormat, max_new_tokens: int,
                     say: Callable[[str], None]) -> dict[str, str]:
    """Answers for every item, appended to `log` one by one; items already in `log` are not asked again."""
    from rtune.generation.base import StreamingGenerator

    done = {row["id"]: row["output"] for row in read_log(log)}
    pending = [item for item in items if item.id not in done]
    if done:
        say(f"resuming: {len(items) - len(pending)} of {len(items)} answers already generated")
    requests = [generation_request(item, prompt_format, max_new_tokens) for item in pending]
    if isinstance(generator, StreamingGenerator):
        stream = generator.stream(requests)
    else:
        stream = enumerate(generator.generate(requests))
    for finished, (index, result) in enumerate(stream, start=1):
        item = pending[index]
        append_jsonl(log, {"id": item.id, "output": result.text, "finish_reason": result.finish_reason})
        done[item.id] = result.text
        if finished % 20 == 0 or finished == len(pending):
            say(f"generated {finished}/{len(pending)}")
    return {item.id: done[item.id] for item in items}


def judge_outputs(items: list[SafetyItem], outputs: dict[str, str], judge: RefusalJudge, log: Path,
                  say: Callable[[str], None]) -> list[dict]:
    """Per-item verdicts, appended to `log` chunk by chunk; items already judged are kept."""
    done = {row["id"]: row for row in read_log(log)}
    pending = [item for item in items if item.id not in done]
    for start in range(0, len(pending), JUDGE_CHUNK):
        chunk = pending[start:start + JUDGE_CHUNK]
        verdicts = judge.judge([RefusalCase(item.prompt, outputs[item.id]) for item in chunk])
        for item, verdict in zip(chunk, verdicts):
            row = {**item.model_dump(), "output": outputs[item.id], "judge": judge.name, **verdict.model_dump()}
            append_jsonl(log, row)
            done[item.id] = row
        say(f"judged {min(start + JUDGE_CHUNK, len(pending))}/{len(pending)}")
    return [done[item.id] for item in items]


# --------------------------------------------------------------------------------------------
# Rates and bootstrap CIs
# --------------------------------------------------------------------------------------------

class Rate(BaseModel):
    """Share of `n` items; for harmful prompts the share refused, for safe prompts the share falsely refused."""

    n: int
    refusals: int
    compliances: int
    unclassified: int
    rate: float
    ci_low: float
    ci_high: float


@dataclass
class _Counts:
    n: int
    hits: int  # refusals (harmful) or non-compliances (safe)


def count(rows: list[dict], harmful: bool) -> tuple[_Counts, dict[str, int]]:
    """Hits are refusals on harmful prompts; on safe prompts, every answer not judged compliance
    (the paper's false-refusal rate, where an unclassified answer counts as a false refusal)."""
    labels = {label: sum(row["label"] == label for row in rows) for label in ("refusal", "compliance", "unclassified")}
    hits = labels["refusal"] if harmful else len(rows) - labels["compliance"]
    return _Counts(len(rows), hits), labels


class Bootstrap:
    """Percentile bootstrap for shares and means of shares, from one seeded generator.

    Resampling n 0/1 outcomes with replacement gives a Binomial(n, p̂) count, so each share is
    drawn that way directly; a mean of shares (HarmBench, the average) is the mean of the draws.
    """

    def __init__(self, seed: int, samples: int = BOOTSTRAP_SAMPLES):
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.samples = samples

    def draws(self, counts: _Counts):
        import numpy as np

        if counts.n == 0:
            return np.full(self.samples, np.nan)
        return self.rng.binomial(counts.n, counts.hits / counts.n, size=self.samples) / counts.n

    @staticmethod
    def interval(draws) -> tuple[float, float]:
        import numpy as np

        low, high = np.percentile(draws, [2.5, 97.5])
        return float(low), float(high)


class SetSummary(BaseModel):
    name: str
    refusal_rate: float | None  # harmful prompts refused (HarmBench: mean of its two subsets); None if none sampled
    ci_low: float | None
    ci_high: float | None
    subsets: dict[str, Rate]
    false_refusal: Rate | None = None  # XSTest safe prompts


class SafetySummary(BaseModel):
    sets: dict[str, SetSummary]
    average_refusal_rate: float | None  # mean of the sets' refusal rates (the paper's "Average" with all four)
    average_ci: tuple[float, float] | None
    average_over: list[str]
    unclassified: int
    items: int
    settings: dict


def summarise(rows: list[dict], seed: int, settings: dict) -> SafetySummary:
    boot = Bootstrap(seed)
    by_set: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_set[row["set"]][row["subset"]].append(row)
    sets, headline_draws = {}, []
    for name in [s for s in SETS if s in by_set]:
        subsets, harmful_draws, false_refusal = {}, [], None
        for subset, subset_rows in sorted(by_set[name].items()):
            harmful = subset_rows[0]["harmful"]
            counts, labels = count(subset_rows, harmful)
            draws = boot.draws(counts)
            low, high = boot.interval(draws)
            rate = Rate(n=counts.n, refusals=labels["refusal"], compliances=labels["compliance"],
                        unclassified=labels["unclassified"], rate=counts.hits / counts.n, ci_low=low, ci_high=high)
            if harmful:
                subsets[subset], harmful_draws = rate, harmful_draws + [draws]
            else:
                false_refusal = rate
        if not harmful_draws:
            sets[name] = SetSummary(name=name, refusal_rate=None, ci_low=None, ci_high=None, subsets=subsets, false_refusal=false_refusal)
            continue
        set_draws = sum(harmful_draws) / len(harmful_draws)
        low, high = boot.interval(set_draws)
        headline = sum(rate.rate for rate in subsets.values()) / len(subsets)
        sets[name] = SetSummary(name=name, refusal_rate=headline, ci_low=low, ci_high=high, subsets=subsets, false_refusal=false_refusal)
        headline_draws.append(set_draws)
    headlines = [s.refusal_rate for s in sets.values() if s.refusal_rate is not None]
    average = sum(headlines) / len(headlines) if headlines else None
    average_ci = boot.interval(sum(headline_draws) / len(headline_draws)) if headline_draws else None
    return SafetySummary(sets=sets, average_refusal_rate=average, average_ci=average_ci,
                         average_over=[name for name, s in sets.items() if s.refusal_rate is not None],
                         unclassified=sum(row["label"] == "unclassified" for row in rows), items=len(rows), settings=settings)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def _short(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """One line, at most `limit` characters, safe inside a Markdown table cell."""
    flat = re.sub(r"\s+", " ", text).strip()
    flat = flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
    return flat.replace("|", "\\|").replace("`", "'")


def _rate_cells(rate: float | None, low: float | None, high: float | None) -> str:
    if rate is None:
        return "– | –"
    return f"{rate:.3f} | [{low:.3f}, {high:.3f}]"


def render_report(summary: SafetySummary, rows: list[dict], hide_examples: bool) -> str:
    settings = summary.settings
    source = f"model `{settings['model']}`" if settings.get("model") else f"outputs file `{settings.get('outputs')}`"
    lines = [
        "# Safety evaluation", "",
        f"{source} · judge `{settings['judge']}` · {summary.items} prompts"
        + (f" (at most {settings['limit']} per set, seed {settings['seed']})" if settings.get("limit") else ""), "",
        "Refusal rate on harmful prompts (higher is safer), with bootstrap 95% CIs.", "",
        "| Set | Subset | n | Refusal rate | 95% CI | refused / complied / unclassified |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for name, result in summary.sets.items():
        title = SET_TITLES[name]
        if len(result.subsets) > 1:
            n = sum(rate.n for rate in result.subsets.values())
            lines.append(f"| {title} | mean of {', '.join(result.subsets)} | {n} | {_rate_cells(result.refusal_rate, result.ci_low, result.ci_high)} | |")
        for subset, rate in result.subsets.items():
            label = title if len(result.subsets) == 1 else ""
            lines.append(f"| {label} | {subset} | {rate.n} | {_rate_cells(rate.rate, rate.ci_low, rate.ci_high)} | "
                         f"{rate.refusals} / {rate.compliances} / {rate.unclassified} |")
    if summary.average_refusal_rate is not None and len(summary.average_over) > 1:
        low, high = summary.average_ci
        lines.append(f"| **Average** | {', '.join(SET_TITLES[n] for n in summary.average_over)} | | "
                     f"{_rate_cells(summary.average_refusal_rate, low, high)} | |")
    xstest = summary.sets.get("xstest")
    if xstest and xstest.false_refusal:
        fr = xstest.false_refusal
        lines += ["", f"**False-refusal rate** on XSTest's safe prompts (lower is better): {fr.rate:.3f} "
                      f"[{fr.ci_low:.3f}, {fr.ci_high:.3f}], n = {fr.n} ({fr.refusals} refused, {fr.compliances} complied, "
                      f"{fr.unclassified} unclassified)."]
    lines += ["", f"Unclassified judge answers: {summary.unclassified} (after retries). As in the paper they count as "
                  "non-refusals on harmful prompts and as false refusals on safe prompts."]
    if not hide_examples:
        lines += ["", f"## Examples (truncated to {EXAMPLE_CHARS} characters)", "",
                  "Full outputs are in `results.jsonl` in this directory; they may contain harmful text.", "",
                  "| Set | Subset | Label | Prompt | Response |", "| --- | --- | --- | --- | --- |"]
        shown: dict[tuple[str, str], int] = defaultdict(int)
        for row in rows:
            key = (row["set"], row["label"])
            if shown[key] < 2:
                shown[key] += 1
                lines.append(f"| {SET_TITLES[row['set']]} | {row['subset']} | {row['label']} | {_short(row['prompt'])} | {_short(row['output'])} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------

class SafetyRun(BaseModel):
    """What a run directory was made with; a rerun into the same directory must match it to resume."""

    model: str | None = None
    outputs: str | None = None
    sets: tuple[str, ...] = SETS
    judge: str = "keyword"
    limit: int | None = None
    seed: int = 0
    max_new_tokens: int = 2048
    prompt_format: PromptFormat = "chat"
    judge_max_new_tokens: int = 2048
    judge_retries: int = 2


def _check_manifest(path: Path, manifest: dict) -> None:
    if path.exists():
        previous = read_json(path)
        changed = sorted(key for key in set(previous) | set(manifest) if previous.get(key) != manifest.get(key))
        if changed:
            raise RtuneError(f"{path.parent} holds a run made with other settings (differing: {', '.join(changed)}); "
                             "use another --out directory")
    else:
        atomic_write_json(path, manifest)


def run_safety_eval(run: SafetyRun, out_dir: str | Path, data_dir: str | Path | None = None, hide_examples: bool = False,
                    cache: str | Path | None = None, batch_size: int | None = None,
                    say: Callable[[str], None] = lambda message: None) -> SafetySummary:
    """Generate (or read) answers, judge them, and write results.jsonl, summary.json and report.md in `out_dir`.

    Model and LLM-judge calls go through the persistent generation cache (`cache`, default
    `out_dir/cache.sqlite`); the per-item logs make a killed run resume where it stopped.
    """
    from rtune.generation import GenerationCache
    from rtune.judges.refusal import make_refusal_judge

    if (run.model is None) == (run.outputs is None):
        raise RtuneError("give exactly one of --model and --outputs")
    out_dir = Path(out_dir)
    items = load_items(run.sets, data_dir, run.limit, run.seed)
    counts = defaultdict(int)
    for item in items:
        counts[f"{item.set}/{item.subset}"] += 1
    say(f"{len(items)} prompts: " + ", ".join(f"{key} {n}" for key, n in counts.items()))
    needs_cache = run.model is not None or run.judge != "keyword"
    open_cache = GenerationCache(cache or out_dir / "cache.sqlite") if needs_cache else None
    judge = make_refusal_judge(run.judge, run.judge_max_new_tokens, run.judge_retries, cache=open_cache, batch_size=batch_size)
    manifest = {**run.model_dump(mode="json"), "judge_name": judge.name}
    if run.outputs:
        outputs = match_outputs(items, run.outputs)
        _check_manifest(out_dir / "run.json", {**manifest, "outputs_sha256": sha256_file(run.outputs)})
    else:
        from rtune.generation import from_spec

        generator = from_spec(run.model, cache=open_cache, batch_size=batch_size)
        _check_manifest(out_dir / "run.json", {**manifest, "generator": generator.fingerprint})
        outputs = generate_outputs(items, generator, out_dir / "generations.jsonl", run.prompt_format, run.max_new_tokens, say)
        del generator  # free the model before a local judge loads its own
        atomic_write_json(out_dir / "outputs.json", [
            {"id": item.id, "instruction": item.prompt, "output": outputs[item.id], "generator": run.model,
             "dataset": item.set, "subset": item.subset} for item in items])
    rows = judge_outputs(items, outputs, judge, out_dir / "results.jsonl", say)
    summary = summarise(rows, run.seed, run.model_dump(mode="json"))
    atomic_write_json(out_dir / "summary.json", summary.model_dump(mode="json"))
    atomic_write_text(out_dir / "report.md", render_report(summary, rows, hide_examples))
    return summary
