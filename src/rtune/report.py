"""`rtune report RUN_DIR`: every result of a run as one self-contained HTML page and a Markdown summary.

It reads the `stage.json` + `result.json` pairs that `rtune run` leaves under `RUN_DIR/stages`, so
it works on a finished, a partial or a resumed run alike. Figures are matplotlib PNGs embedded as
base64; the page loads nothing from anywhere else. All model text is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

from rtune.errors import RtuneError
from rtune.io import atomic_write_text, read_json, read_jsonl

EXAMPLES = 3  # instructions shown side by side
EXAMPLE_CHARS = 1500
ASPECT_ORDER = ("helpfulness", "clarity", "factuality", "depth", "engagement", "safety")


@dataclass
class StageResult:
    key: str
    kind: str
    cell: str  # cell name ("" for shared stages)
    safety: int
    method: str
    folder: Path
    result: dict


@dataclass
class Section:
    title: str
    note: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, base64 PNG)
    html_extra: str = ""


def collect(run_dir: Path) -> list[StageResult]:
    """Finished stages in plan order (as listed in experiment.json), others after them by name."""
    root = Path(run_dir) / "stages"
    if not root.is_dir():
        raise RtuneError(f"{run_dir}: not a run directory (no stages/ folder); run `rtune run EXPERIMENT.yaml` first")
    order = {key: i for i, key in enumerate(read_json(Path(run_dir) / "experiment.json").get("stages", []))} \
        if (Path(run_dir) / "experiment.json").exists() else {}
    found = []
    for marker in root.rglob("stage.json"):
        if ".partial-" in str(marker.parent.relative_to(root)):
            continue
        stage = read_json(marker)
        cell = stage.get("cell") or {}
        result = read_json(marker.parent / "result.json") if (marker.parent / "result.json").exists() else {}
        found.append(StageResult(stage["key"], stage["kind"], cell.get("name", ""), cell.get("safety") or 0,
                                 cell.get("method", ""), marker.parent, result))
    return sorted(found, key=lambda s: (order.get(s.key, len(order)), s.key))


def _ci(value: float | None, low: float | None = None, high: float | None = None, digits: int = 3) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.{digits}f}" + (f" [{low:.{digits}f}, {high:.{digits}f}]" if low is not None and high is not None else "")


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(labels: list[str], series: dict[str, list[tuple[float, float, float]]], xlabel: str, reference: float | None = None) -> str:
    """Horizontal grouped bars with CI whiskers; each series value is (value, low, high)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(labels) * max(1, len(series))))
    height = 0.8 / max(1, len(series))
    for n, (name, values) in enumerate(series.items()):
        ys = [i + n * height for i in range(len(labels))]
        points = [v[0] for v in values]
        errors = [[max(0, v[0] - v[1]) for v in values], [max(0, v[2] - v[0]) for v in values]]
        ax.barh(ys, points, height=height, xerr=errors, capsize=3, label=name)
    ax.set_yticks([i + height * (len(series) - 1) / 2 for i in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if reference is not None:
        ax.axvline(reference, color="grey", linestyle="--", linewidth=1)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return _png(fig)


def likelihood_section(stages: list[StageResult]) -> Section | None:
    chosen = [s for s in stages if s.kind == "likelihood" and s.result]
    if not chosen:
        return None
    first = chosen[0].result
    section = Section("Judge-free likelihood metric",
                      f"Share of held-out instructions whose own reference response the model scores above "
                      f"{first['n_distractors']} responses to other instructions, under the inference template "
                      f"(score `{first['headline']}`; chance {first['chance_accuracy']:.3f}). Margin: reference score minus the best "
                      "distractor's. 95% bootstrap CIs over items.",
                      ["Cell", "Accuracy", "Margin", "Other scores: accuracy (margin)", "Items"])
    series = []
    for s in chosen:
        variants = s.result["variants"]
        head = variants[s.result["headline"]]
        acc, mar = head["accuracy"], head["margin"]
        others = " · ".join(f"{name} {v['accuracy']['value']:.3f} ({v['margin']['value']:+.2f})"
                            for name, v in variants.items() if name != s.result["headline"])
        section.rows.append([s.cell, _ci(acc["value"], acc["ci_low"], acc["ci_high"]), _ci(mar["value"], mar["ci_low"], mar["ci_high"], 2),
                             others, str(s.result["n_items"])])
        series.append((acc["value"], acc["ci_low"], acc["ci_high"]))
    section.figures.append(("Likelihood accuracy (dashed: chance)",
                            _bars([s.cell for s in chosen], {"accuracy": series}, "accuracy", first["chance_accuracy"])))
    return section


def pairwise_section(stages: list[StageResult]) -> Section | None:
    chosen = [s for s in stages if s.kind == "pairwise" and s.result]
    if not chosen:
        return None
    section = Section("Pairwise win rate vs the reference", "Win rate in % (bootstrap 95% CI); LC = length-controlled (± standard error).",
                      ["Cell", "Reference", "Win rate", "LC win rate", "n"])
    win, lc = [], []
    for s in chosen:
        r = s.result
        lc_value, lc_se = r.get("length_controlled_winrate"), r.get("lc_standard_error")
        section.rows.append([s.cell, r.get("reference", ""), _ci(r["win_rate"], r["ci_low"], r["ci_high"], 1),
                             _ci(lc_value, digits=1) + (f" ± {lc_se:.1f}" if lc_se is not None else ""), str(r["n"])])
        win.append((r["win_rate"], r["ci_low"], r["ci_high"]))
        se = (lc_se or 0) * 1.96
        lc.append((lc_value, lc_value - se, lc_value + se) if lc_value is not None else (0.0, 0.0, 0.0))
    series = {"win rate": win, "LC win rate": lc} if any(s.result.get("length_controlled_winrate") is not None for s in chosen) \
        else {"win rate": win}
    section.figures.append(("Win rate and LC win rate vs the reference (%)", _bars([s.cell for s in chosen], series, "%", 50.0)))
    return section


def aspects_section(stages: list[StageResult]) -> Section | None:
    chosen = [s for s in stages if s.kind == "aspects" and s.result.get("by_category")]
    if not chosen:
        return None
    groups = [s.result["by_category"].get("all", {}) for s in chosen]
    names = [a for a in ASPECT_ORDER if any(a in g.get("aspects", {}) for g in groups)]
    section = Section("Aspect scores (1–5)", "Mean judge score per aspect with bootstrap 95% CIs; overall = mean of the five aspects.",
                      ["Cell", *names, "Overall"])
    series: dict[str, list] = {name: [] for name in names}
    for s, group in zip(chosen, groups):
        cells = []
        for name in names:
            stat = group.get("aspects", {}).get(name)
            cells.append(_ci(stat["mean"], *stat["ci95"], digits=2) if stat else "–")
            series[name].append((stat["mean"], *stat["ci95"]) if stat and stat["ci95"][0] is not None else ((stat or {}).get("mean", 0.0),) * 3)
        overall = group.get("overall")
        section.rows.append([s.cell, *cells, _ci(overall["mean"], *overall["ci95"], digits=2) if overall else "–"])
    section.figures.append(("Aspect scores", _bars([s.cell for s in chosen], series, "score (1–5)")))
    return section


def _core_metric(entry: dict) -> tuple[str, float, float | None] | None:
    for metric in ("acc_norm", "acc", "exact_match"):
        if isinstance(entry.get(metric), (int, float)):
            return metric, entry[metric], entry.get(f"{metric}_stderr")
    return None


def core_section(stages: list[StageResult]) -> Section | None:
    chosen = [s for s in stages if s.kind == "core" and s.result.get("results")]
    if not chosen:
        return None
    tasks = list(dict.fromkeys(t for s in chosen for t in s.result["results"] if not t.startswith("mmlu_")))
    section = Section("Core capabilities", "Accuracy per task (acc_norm where lm-eval reports it, else acc; GSM8K exact match), "
                      "± 1.96 standard errors.", ["Cell", *tasks])
    series: dict[str, list] = {t: [] for t in tasks}
    for s in chosen:
        row = [s.cell]
        for task in tasks:
            found = _core_metric(s.result["results"].get(task, {}))
            if found is None:
                row.append("–")
                series[task].append((0.0, 0.0, 0.0))
                continue
            metric, value, stderr = found
            half = 1.96 * (stderr or 0)
            row.append(f"{_ci(value, value - half, value + half)} ({metric})")
            series[task].append((value, value - half, value + half))
        section.rows.append(row)
    section.figures.append(("Core task accuracy", _bars([s.cell for s in chosen], series, "accuracy")))
    return section


def safety_section(stages: list[StageResult]) -> Section | None:
    chosen = [s for s in stages if s.kind == "safety" and s.result.get("sets")]
    if not chosen:
        return None
    section = Section("Safety: refusal and false refusal", "Refusal rate on harmful prompts (higher is safer; mean over the sets "
                      "run) and false-refusal rate on XSTest's safe prompts (lower is better), with bootstrap 95% CIs.",
                      ["Cell", "Safety examples", "Refusal rate", "False refusal", "Per set"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    lines: dict[str, list[tuple[int, float | None, float | None]]] = {}
    for s in chosen:
        r = s.result
        low, high = r.get("average_ci") or (None, None)
        fr = (r["sets"].get("xstest") or {}).get("false_refusal")
        per_set = " · ".join(f"{name} {v['refusal_rate']:.2f}" for name, v in r["sets"].items() if v.get("refusal_rate") is not None)
        section.rows.append([s.cell, str(s.safety), _ci(r.get("average_refusal_rate"), low, high),
                             _ci(fr["rate"], fr["ci_low"], fr["ci_high"]) if fr else "–", per_set])
        group = s.cell.replace(f"+safety{s.safety}", "") if s.safety else s.cell
        lines.setdefault(group, []).append((s.safety, r.get("average_refusal_rate"), fr["rate"] if fr else None))
    for n, (group, points) in enumerate(lines.items()):
        points.sort()
        color = f"C{n % 10}"
        xs = [p[0] for p in points]
        if any(p[1] is not None for p in points):
            ax.plot(xs, [p[1] for p in points], "o-", color=color, label=f"{group} refusal")
        if any(p[2] is not None for p in points):
            ax.plot(xs, [p[2] for p in points], "s--", color=color, label=f"{group} false refusal")
    ax.set_xlabel("safety examples in training")
    ax.set_ylabel("rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="x-small")
    section.figures.append(("Refusal (solid) and false-refusal (dashed) rates against the number of safety examples", _png(fig)))
    return section


def training_section(stages: list[StageResult]) -> Section | None:
    chosen = [s for s in stages if s.kind == "train" and (s.folder / "metrics.jsonl").exists()]
    if not chosen:
        return None
    section = Section("Training", "Loss per logged optimizer step (from each run's metrics.jsonl).", ["Cell", "Steps", "First loss", "Last loss"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in chosen:
        rows = [row for row in read_jsonl(s.folder / "metrics.jsonl", tolerate_truncated_tail=True) if "loss" in row]
        if not rows:
            continue
        ax.plot([row["step"] for row in rows], [row["loss"] for row in rows], label=s.cell)
        section.rows.append([s.cell, str(rows[-1]["step"]), f"{rows[0]['loss']:.3f}", f"{rows[-1]['loss']:.3f}"])
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize="small")
    section.figures.append(("Training loss", _png(fig)))
    return section


def examples_html(stages: list[StageResult]) -> str:
    """The first few instructions of each instruction set, every cell's answer side by side."""
    by_set: dict[str, list[StageResult]] = {}
    for s in stages:
        if s.kind == "generate" and not s.key.endswith("/generate-safety"):  # answers to harmful prompts stay out
            by_set.setdefault(s.key.rsplit("/generate-", 1)[-1], []).append(s)
    parts = []
    for name, chosen in by_set.items():
        outputs = {s.cell: read_json(s.folder / "outputs.json") for s in chosen if (s.folder / "outputs.json").exists()}
        if not outputs:
            continue
        parts.append(f"<h3>{html.escape(name)}</h3>")
        first = next(iter(outputs.values()))
        for index, row in enumerate(first[:EXAMPLES]):
            cells = "".join(
                f"<div class='answer'><h4>{html.escape(cell)}</h4><pre>{html.escape(_clip(rows[index]['output']))}</pre></div>"
                for cell, rows in outputs.items() if index < len(rows))
            parts.append(f"<div class='example'><p class='instruction'><b>Instruction:</b></p><pre>{html.escape(_clip(row['instruction']))}</pre>"
                         f"<div class='answers'>{cells}</div></div>")
    return "".join(parts)


def _clip(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + " …"


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}
th{background:#f3f3f3}img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:13px}
.answers{display:flex;gap:8px;flex-wrap:wrap}.answer{flex:1 1 280px;border:1px solid #ddd;padding:4px 8px;background:#fafafa}
pre{white-space:pre-wrap;word-wrap:break-word;font-size:13px;margin:0}.example{margin:1em 0 2em}h4{margin:4px 0}"""


def render_html(title: str, sections: list[Section], examples: str) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.note)}</p>")
        if section.rows:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in section.headers)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in section.rows)
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        for caption, png in section.figures:
            body.append(f"<figure><img alt='{html.escape(caption, quote=True)}' src='data:image/png;base64,{png}'>"
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if examples:
        body.append(f"<h2>Example outputs</h2>{examples}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", "Figures and example outputs are in report.html (same folder).", ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.note, ""]
        if section.rows:
            lines += ["| " + " | ".join(section.headers) + " |", "|" + " --- |" * len(section.headers)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in section.rows]
            lines.append("")
    return "\n".join(lines)


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    stages = collect(run_dir)
    experiment = read_json(run_dir / "experiment.json") if (run_dir / "experiment.json").exists() else {}
    title = f"rtune report: {experiment.get('name', run_dir.name)}"
    builders = (likelihood_section, pairwise_section, aspects_section, core_section, safety_section, training_section)
    sections = [section for builder in builders if (section := builder(stages)) is not None]
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    atomic_write_text(html_path, render_html(title, sections, examples_html(stages)))
    atomic_write_text(md_path, render_markdown(title, sections))
    return html_path, md_path
