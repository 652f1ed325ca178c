"""`rtune report`: every kind of stage result becomes tables and embedded figures; the HTML renders in
headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rtune.io import atomic_write_json, write_jsonl
from rtune.report.document import write_report

HOSTILE = "<script>alert('x')</script></pre><img src=x onerror=alert(1)> & done"


def _stage(run_dir: Path, key: str, kind: str, result: dict, cell: str = "", method: str = "", safety: int = 0) -> Path:
    folder = run_dir / "stages" / key
    atomic_write_json(
        folder / "stage.json",
        {
            "key": key,
            "kind": kind,
            "hash": "h",
            "cell": {"name": cell, "model": "m", "method": method, "dataset": "d", "safety": safety, "seed": 0}
            if cell
            else None,
        },
    )
    atomic_write_json(folder / "result.json", result)
    return folder


def _likelihood(accuracy_hits: list[int]) -> dict:
    from rtune.data.records import Record
    from rtune.evals.instructability import Candidate, LikelihoodSettings, summarise

    n = len(accuracy_hits)
    records = [Record(id=str(i), prompt=f"q{i}", completion=f"a{i}", source="t") for i in range(n)]
    matrix = {(i, j): (-1.0 if i == j and accuracy_hits[i] else -2.0 - j) for i in range(n) for j in range(n)}
    return summarise(
        "m",
        "f",
        records,
        [Candidate(str(i), "", 5) for i in range(n)],
        [[j for j in range(n) if j != i] for i in range(n)],
        matrix,
        [-3.0] * n,
        LikelihoodSettings(bootstrap_samples=100),
    ).model_dump(mode="json")


def _pairwise(wins: int, n: int = 20) -> dict:
    from rtune.winrate.annotations import Annotation
    from rtune.winrate.metrics import summarize

    rows = [
        Annotation(instruction=f"i{k}", preference=2.0 if k < wins else 1.0, output_1="r" * 50, output_2="m" * (40 + k))
        for k in range(n)
    ]
    return {**summarize(rows, "x", length_controlled=False).model_dump(mode="json"), "reference": "m/d/it/s0"}


def _aspects(level: float) -> dict:
    from rtune.judges.aspect_summary import summarise_group
    from rtune.judges.aspects import AspectsSummary

    rows = [
        {"scores": {"helpfulness": level, "clarity": level + (k % 2), "factuality": 4, "depth": 3, "engagement": 3}}
        for k in range(6)
    ]
    return AspectsSummary(
        annotator="a",
        judge="j",
        prompt_version="v",
        n_items=6,
        n_scored=6,
        n_failed=0,
        n_resumed=0,
        failed_ids=[],
        by_category={"all": summarise_group(rows, 200, 0)},
    ).model_dump(mode="json")


def _core(acc: float) -> dict:
    return {
        "document": "core.json",
        "samples": "core_samples.jsonl",
        "engine": "builtin",
        "chat_template": False,
        "seconds": 1.0,
        "n_shot": {"arc_easy": 0, "gsm8k": 8},
        "results": {
            "arc_easy": {
                "kind": "task",
                "n": 100,
                "acc": {"value": acc, "stderr": 0.03},
                "acc_norm": {"value": 0.45, "stderr": 0.03},
            },
            "gsm8k": {"kind": "task", "n": 50, "exact_match": {"value": 0.1, "stderr": 0.02}},
        },
    }


def _safety(refused: int, false_refusals: int) -> dict:
    from rtune.evals.safety import summarise

    rows = [
        {"set": "xstest", "subset": "unsafe", "harmful": True, "label": "refusal" if k < refused else "compliance"}
        for k in range(10)
    ]
    rows += [
        {
            "set": "xstest",
            "subset": "safe",
            "harmful": False,
            "label": "refusal" if k < false_refusals else "compliance",
        }
        for k in range(10)
    ]
    return summarise(rows, 0, {}).model_dump(mode="json")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    cells = {"m/base": ("base", 0), "m/d/it/s0": ("it", 0), "m/d/rt/s0": ("rt", 0), "m/d/rt+safety100/s0": ("rt", 100)}
    for n, (cell, (method, safety)) in enumerate(cells.items()):
        _stage(
            run, f"{cell}/likelihood", "likelihood", _likelihood([1] * (2 + n) + [0] * (6 - n)), cell, method, safety
        )
        _stage(run, f"{cell}/aspects", "aspects", _aspects(2.0 + n * 0.5), cell, method, safety)
        _stage(run, f"{cell}/core", "core", _core(0.4 + n / 20), cell, method, safety)
        safety_folder = _stage(run, f"{cell}/safety", "safety", _safety(3 + 2 * n, n), cell, method, safety)
        atomic_write_json(
            safety_folder / "outputs.json", [{"instruction": "harmful", "output": "HARMFUL-SECRET", "generator": cell}]
        )
        outputs = [
            {
                "instruction": f"Instruction {k} for {cell}",
                "output": f"{HOSTILE} answer {k} of {cell}",
                "generator": cell,
            }
            for k in range(4)
        ]
        atomic_write_json(
            _stage(run, f"{cell}/generate-heldout", "generate", {"n": 4, "hit_token_limit": 0}, cell, method, safety)
            / "outputs.json",
            outputs,
        )
        if method != "base":
            train = _stage(run, f"{cell}/train", "train", {"steps": 5, "final_loss": 0.5}, cell, method, safety)
            write_jsonl(train / "metrics.jsonl", [{"step": s, "loss": 3.0 / s + n} for s in range(1, 6)])
    _stage(run, "m/d/rt/s0/pairwise", "pairwise", _pairwise(13), "m/d/rt/s0", "rt")
    _stage(run, "data/d", "data", {"records": 8, "safety_added": 0})
    (run / "stages" / "m/d/rt/s0/likelihood.partial-abc").mkdir()  # an unfinished stage is not reported
    atomic_write_json(run / "experiment.json", {"name": "fixture", "stages": []})
    write_report(run)
    return run


def test_markdown_has_every_metric_with_intervals(run_dir):
    md = (run_dir / "report.md").read_text()
    for title in (
        "Judge-free likelihood metric",
        "Pairwise win rate",
        "Aspect scores",
        "Core capabilities",
        "Safety",
        "Training",
    ):
        assert f"## {title}" in md
    assert re.search(r"\| m/d/rt/s0 \| 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\] \|", md)  # likelihood accuracy with its CI
    assert "| m/d/rt/s0 | m/d/it/s0 | 65.0 [" in md  # 13 of 20 wins
    assert "| m/d/rt+safety100/s0 | 100 |" in md  # safety table names the mixture size


def test_html_is_self_contained_and_escaped(run_dir):
    page = (run_dir / "report.html").read_text()
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 6 and all(src.startswith("data:image/png;base64,") for src in sources)
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower() and "<link" not in page
    assert html.escape(HOSTILE) in page and "onerror=alert" not in page.replace(html.escape("onerror=alert"), "")
    assert "HARMFUL-SECRET" not in page  # answers to harmful prompts stay out of the examples
    assert page.count("class='example'") == 4  # a seeded draw of up to EXAMPLES instructions (the fixture has 4)


CHECK = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { \
window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.tagName)))); }, true);
var original = console.error;
console.error = function () { \
window.__errors.push(Array.prototype.join.call(arguments, ' ')); original.apply(console, arguments); };
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var out = document.createElement('pre');
  out.id = 'rtune-check';
  out.textContent = JSON.stringify({images: images.length, \
broken: images.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length,
                                    widths: images.map(function (i) { return i.naturalWidth; }), \
errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def test_html_renders_in_headless_chromium(run_dir, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (Debian: apt-get install -y chromium); CI installs it")
    page = (run_dir / "report.html").read_text()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("<head>", "<head>" + CHECK, 1))
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            checked.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"<pre id=\"rtune-check\">(.*?)</pre>", done.stdout, re.S)
    assert found, f"chromium printed no check result (exit {done.returncode}): {done.stderr[-2000:]}"
    check = json.loads(html.unescape(found.group(1)))
    assert check["images"] == 6 and check["broken"] == 0 and min(check["widths"]) > 100, check
    assert check["errors"] == []
    console = [
        line for line in done.stderr.splitlines() if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)
    ]
    assert console == []


def test_report_cli_and_a_folder_that_is_not_a_run(run_dir, tmp_path, monkeypatch, capsys):
    from rtune.cli import main

    monkeypatch.setattr(sys, "argv", ["rtune", "report", str(run_dir)])
    main()
    assert "report.html" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["rtune", "report", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and "not a run directory" in capsys.readouterr().err


def test_report_to_a_folder_writes_png_figures_and_quoted_examples(run_dir, tmp_path):
    html_path, md_path = write_report(run_dir, tmp_path / "published")
    md = md_path.read_text()
    linked = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(linked) == 6 and all((md_path.parent / link).read_bytes().startswith(b"\x89PNG") for link in linked)
    assert "## Wall time per stage" not in md  # the fixture stages record no times
    assert (
        "HARMFUL-SECRET" not in md and "<script>" not in md and "&lt;script&gt;" in md
    )  # answers are quoted, not rendered
    assert md.count("**Instruction ") == 4 and html_path.exists()


def test_quoted_examples_show_the_text_as_written():
    """Markdown shows an entity as its character: unescaping each quoted line gives the line back."""
    from rtune.pipeline.kinds.generate import _quoted

    text = "It's #1: use `x * y`, not [a](b) or __init__ & <b>.\n\n" + HOSTILE
    quoted = _quoted(text).splitlines()
    assert [html.unescape(line[2:]) for line in quoted] == text.splitlines()
    bare = [re.sub(r"&(amp|lt|gt|#\d+);", "", line[2:]) for line in quoted]  # what is left is plain text
    assert not any(re.search(r"[`*_#\[<&]", line) for line in bare)
