"""`rtune metrics`: win rates of AlpacaEval-style annotation files, and the difficulty table behind LC."""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Metrics over judge annotations.")


@app.command("winrate")
def winrate(
    files: List[Path] = typer.Argument(..., help="AlpacaEval annotations.json files (or .jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the JSON here."),
    no_lc: bool = typer.Option(False, "--no-lc", help="Skip the length-controlled win rate."),
    difficulty: Optional[Path] = typer.Option(None, "--difficulty", help="Difficulty table from `rtune metrics difficulty` (default: the packaged AlpacaEval one)."),
    n_resamples: int = typer.Option(1000, "--bootstrap", min=10, help="Bootstrap resamples for the 95% interval."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
) -> None:
    """Print per-file JSON: win_rate, standard_error, length_controlled_winrate, n, interval, counts."""
    from rtune.annotations import read_annotations
    from rtune.difficulty import read_table
    from rtune.io import atomic_write_json
    from rtune.metrics import summarize

    table = read_table(difficulty) if difficulty is not None else None
    reports = {str(path): summarize(read_annotations(path), str(path), length_controlled=not no_lc, table=table,
                                    n_resamples=n_resamples, seed=seed).model_dump(mode="json")
               for path in files}
    if out is not None:
        atomic_write_json(out, reports)
    typer.echo(json.dumps(reports, indent=2, ensure_ascii=False))


def _annotation_files(paths: List[Path], exclude: List[str]) -> list[Path]:
    files = [f for p in paths for f in (sorted(p.glob("*.json")) if p.is_dir() else [p])]
    return [f for f in files if f.stem not in exclude]


@app.command("difficulty")
def difficulty(
    paths: List[Path] = typer.Argument(..., help="Annotation files of many models against one baseline, or folders of them."),
    out: Path = typer.Option(..., "--out", help="Where to write the table (JSON)."),
    exclude: List[str] = typer.Option([], "--exclude", help="Leave out files with this stem (repeatable)."),
    C: Optional[float] = typer.Option(None, "--joint-c", min=0, help="L1 penalty of the joint fit (default: chosen by 5-fold CV, slow)."),
    note: Optional[str] = typer.Option(None, "--note", help="Free text stored in the table (data source, licence)."),
) -> None:
    """Estimate per-instruction difficulty for the length-controlled win rate from a pool of models."""
    from rtune.annotations import read_annotations
    from rtune.difficulty import estimate_difficulty, write_table
    from rtune.errors import RtuneError
    from rtune.io import sha256_file

    files = _annotation_files(paths, exclude)
    if not files:
        raise RtuneError("no annotation files found in " + ", ".join(map(str, paths)))
    table = estimate_difficulty({f.stem: read_annotations(f) for f in files}, C=C)
    table.provenance.update({
        "about": "Per-instruction difficulty for rtune's length-controlled win rate (see rtune/difficulty.py).",
        "method": "joint L1 logistic fit on soft labels: per-model intercept + per-model tanh length slope "
                  "+ per-instruction term; difficulty = the per-instruction term; length_slope = mean per-model slope",
        "command": shlex.join(["rtune", "metrics", "difficulty", *map(str, paths), "--out", str(out),
                               *[arg for stem in exclude for arg in ("--exclude", stem)],
                               *(["--joint-c", str(C)] if C is not None else [])]),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "inputs": {f.name: sha256_file(f)[:16] for f in files},
        **({"note": note} if note else {}),
    })
    write_table(out, table)
    typer.echo(f"wrote {out}: {len(table.difficulty)} instructions from {len(files)} models "
               f"(C={table.C:.4g}, length_slope={table.length_slope:.3f})")
