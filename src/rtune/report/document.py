"""`rtune report RUN_DIR`: every result of a run as one self-contained HTML page and a Markdown summary.

It reads the `stage.json` + `result.json` pairs that `rtune run` leaves under `RUN_DIR/stages`, so
it works on a finished, a partial or a resumed run alike. Each result is read back into its kind's
result type, and each kind writes its own section. Figures are matplotlib PNGs embedded as base64;
the page loads nothing from anywhere else. All model text is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtune.errors import RtuneError
from rtune.io import atomic_write_text, check_output, read_json
from rtune.pipeline import registry
from rtune.report.figures import Section


@dataclass
class StageResult:
    key: str
    kind: str
    cell: str  # cell name ("" for shared stages)
    safety: int
    method: str
    folder: Path
    result: Any  # the kind's result type, or None when the stage left none
    seconds: float | None = None  # how long the stage ran (wall clock)
    cpu_seconds: float | None = None  # CPU time of the process that ran it, all threads


def collect(run_dir: Path) -> list[StageResult]:
    """Finished stages in plan order (as listed in experiment.json), others after them by name."""
    root = Path(run_dir) / "stages"
    if not root.is_dir():
        raise RtuneError(f"{run_dir}: not a run directory (no stages/ folder); run `rtune run EXPERIMENT.yaml` first")
    order = (
        {key: i for i, key in enumerate(read_json(Path(run_dir) / "experiment.json").get("stages", []))}
        if (Path(run_dir) / "experiment.json").exists()
        else {}
    )
    found = []
    for marker in root.rglob("stage.json"):
        if ".partial-" in str(marker.parent.relative_to(root)):
            continue
        stage = read_json(marker)
        cell = stage.get("cell") or {}
        result = _typed(stage["kind"], marker.parent / "result.json")
        found.append(
            StageResult(
                stage["key"],
                stage["kind"],
                cell.get("name", ""),
                cell.get("safety") or 0,
                cell.get("method", ""),
                marker.parent,
                result,
                stage.get("seconds"),
                stage.get("cpu_seconds"),
            )
        )
    return sorted(found, key=lambda s: (order.get(s.key, len(order)), s.key))


def _typed(kind: str, path: Path) -> Any:
    """A stage's result in its kind's type; None when it left none or its kind is not loaded (a plugin's)."""
    known = registry.kinds().get(kind)
    if known is None or known.result is None or not path.exists():
        return None
    return known.result.model_validate(read_json(path))


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}
th{background:#f3f3f3}img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:13px}
.answers{display:flex;gap:8px;flex-wrap:wrap}\
.answer{flex:1 1 280px;border:1px solid #ddd;padding:4px 8px;background:#fafafa}
pre{white-space:pre-wrap;word-wrap:break-word;font-size:13px;margin:0}.example{margin:1em 0 2em}h4{margin:4px 0}"""


def render_html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.note)}</p>")
        if section.rows:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in section.headers)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in section.rows
            )
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        for caption, png in section.figures:
            body.append(
                f"<figure><img alt='{html.escape(caption, quote=True)}' src='data:image/png;base64,{png}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        body.append(section.html_extra)  # built from escaped text by the kind that wrote it
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(
    title: str, sections: list[Section], figures: Path | None = None, link_from: Path | None = None
) -> str:
    """Tables in Markdown; with `figures`, each figure is written there as a PNG and linked (relative to
    `link_from`)."""
    lines = [f"# {title}", ""]
    if figures is None:
        lines += ["Figures are in report.html (same folder).", ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.note, ""]
        if section.rows:
            lines += ["| " + " | ".join(section.headers) + " |", "|" + " --- |" * len(section.headers)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in section.rows]
            lines.append("")
        for number, (caption, png) in enumerate(section.figures if figures is not None else [], start=1):
            path = figures / f"{re.sub(r'[^a-z0-9]+', '-', section.title.lower()).strip('-')}-{number}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(png))
            lines += [f"![{caption}]({path.relative_to(link_from) if link_from else path})", ""]
        if section.markdown_extra:
            lines += [section.markdown_extra, ""]
    return "\n".join(lines)


def timing_section(stages: list[StageResult]) -> Section | None:
    timed = [stage for stage in stages if stage.seconds is not None]
    if not timed:
        return None
    table = Section(
        "Wall time per stage",
        f"Seconds each stage ran (total {sum(s.seconds for s in timed) / 3600:.2f} h of wall "
        "time; cached stages count the run that made them) and the CPU time of the process that ran it (all "
        "threads; on a machine shared with other jobs, CPU time says more than wall time).",
        ["Stage", "Kind", "Wall seconds", "CPU seconds"],
    )
    table.rows = [
        [
            stage.key,
            stage.kind,
            f"{stage.seconds:.0f}",
            f"{stage.cpu_seconds:.0f}" if stage.cpu_seconds is not None else "–",
        ]
        for stage in timed
    ]
    return table


def write_report(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """report.html (figures embedded) and report.md in `out` (default: the run directory); with `out`, the
    Markdown links PNG files written to `out/figures`, so the folder can be committed or published as is."""
    run_dir = Path(run_dir)
    stages = collect(run_dir)
    folder = check_output(out if out is not None else run_dir, directory=True)
    experiment = read_json(run_dir / "experiment.json") if (run_dir / "experiment.json").exists() else {}
    title = f"rtune report: {experiment.get('name', run_dir.name)}"
    sections = []
    for name, kind in registry.kinds().items():
        chosen = [stage for stage in stages if stage.kind == name and stage.result is not None]
        if kind.section is not None and chosen and (section := kind.section(chosen)) is not None:
            sections.append(section)
    if (timing := timing_section(stages)) is not None:
        sections.append(timing)
    html_path, md_path = folder / "report.html", folder / "report.md"
    atomic_write_text(html_path, render_html(title, sections))
    atomic_write_text(
        md_path, render_markdown(title, sections, folder / "figures" if out is not None else None, folder)
    )
    return html_path, md_path
