"""report.md: rates and intervals in tables, and at most two short truncated examples per set and label.

Full answers stay in results.jsonl; the report is what gets shared, so examples can be left out.
"""

from __future__ import annotations

import re
from collections import defaultdict

from rtune.evals.safety.rates import SafetySummary
from rtune.evals.safety.sets import SET_TITLES

EXAMPLE_CHARS = 80


def _short(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """One line, at most `limit` characters, safe inside a Markdown table cell."""
    flat = re.sub(r"\s+", " ", text).strip()
    flat = flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
    return flat.replace("|", "\\|").replace("`", "'")


def _rate_cells(rate: float | None, low: float | None, high: float | None) -> str:
    if rate is None:
        return "– | –"
    return f"{rate:.3f} | [{low:.3f}, {high:.3f}]"


def _examples(rows: list[dict]) -> list[str]:
    lines = [
        "",
        f"## Examples (truncated to {EXAMPLE_CHARS} characters)",
        "",
        "Full outputs are in `results.jsonl` in this directory; they may contain harmful text.",
        "",
        "| Set | Subset | Label | Prompt | Response |",
        "| --- | --- | --- | --- | --- |",
    ]
    shown: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        key = (row["set"], row["label"])
        if shown[key] < 2:
            shown[key] += 1
            lines.append(
                f"| {SET_TITLES[row['set']]} | {row['subset']} | {row['label']} | {_short(row['prompt'])} "
                f"| {_short(row['output'])} |"
            )
    return lines


def render_report(summary: SafetySummary, rows: list[dict], hide_examples: bool) -> str:
    settings = summary.settings
    source = f"model `{settings['model']}`" if settings.get("model") else f"outputs file `{settings.get('outputs')}`"
    sampled = f" (at most {settings['limit']} per set, seed {settings['seed']})" if settings.get("limit") else ""
    lines = [
        "# Safety evaluation",
        "",
        f"{source} · judge `{settings['judge']}` · {summary.items} prompts{sampled}",
        "",
        "Refusal rate on harmful prompts (higher is safer), with bootstrap 95% CIs.",
        "",
        "| Set | Subset | n | Refusal rate | 95% CI | refused / complied / unclassified |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for name, result in summary.sets.items():
        title = SET_TITLES[name]
        if len(result.subsets) > 1:
            n = sum(rate.n for rate in result.subsets.values())
            lines.append(
                f"| {title} | mean of {', '.join(result.subsets)} | {n} | "
                f"{_rate_cells(result.refusal_rate, result.ci_low, result.ci_high)} | |"
            )
        for subset, rate in result.subsets.items():
            label = title if len(result.subsets) == 1 else ""
            lines.append(
                f"| {label} | {subset} | {rate.n} | {_rate_cells(rate.rate, rate.ci_low, rate.ci_high)} | "
                f"{rate.refusals} / {rate.compliances} / {rate.unclassified} |"
            )
    if summary.average_refusal_rate is not None and len(summary.average_over) > 1:
        low, high = summary.average_ci
        lines.append(
            f"| **Average** | {', '.join(SET_TITLES[n] for n in summary.average_over)} | | "
            f"{_rate_cells(summary.average_refusal_rate, low, high)} | |"
        )
    xstest = summary.sets.get("xstest")
    if xstest and xstest.false_refusal:
        fr = xstest.false_refusal
        lines += [
            "",
            f"**False-refusal rate** on XSTest's safe prompts (lower is better): {fr.rate:.3f} "
            f"[{fr.ci_low:.3f}, {fr.ci_high:.3f}], n = {fr.n} ({fr.refusals} refused, "
            f"{fr.compliances} complied, {fr.unclassified} unclassified).",
        ]
    lines += [
        "",
        f"Unclassified judge answers: {summary.unclassified} (after retries). As in the paper they count as "
        "non-refusals on harmful prompts and as false refusals on safe prompts.",
    ]
    if not hide_examples:
        lines += _examples(rows)
    return "\n".join(lines) + "\n"
