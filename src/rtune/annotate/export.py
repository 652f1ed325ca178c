"""Human judgments as AlpacaEval annotations, and the human win rate.

The display order is undone here: a person who picked "left" preferred the output shown first
(`shown_first`), so the preference is that output's number (1 = reference, 2 = model); a tie is
1.5 and a skipped pair has preference null (AlpacaEval's metrics, and ours, leave it out). Every
row carries its annotator, so several people's judgments of the same pairs stay apart in one file.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel

from rtune.annotate.pairs import PAIRS_FILE, BlindPair, dir_pairs
from rtune.annotate.settings import ExportSettings
from rtune.annotate.store import STORE_FILE, Judgment, Store
from rtune.errors import RtuneError
from rtune.io import check_output
from rtune.winrate.annotations import Annotation, write_annotations
from rtune.winrate.metrics import WinRateReport, summarize

ANNOTATIONS_FILE = "annotations.json"


class ExportResult(BaseModel):
    path: Path
    n_rows: int
    n_pairs: int  # pairs in the folder
    n_skipped: int
    judgments: dict[str, int]  # live judgments per annotator, skips included
    n_unknown: int  # judgments of pairs the folder no longer lists (not exported)


def preference(judgment: Judgment) -> float | None:
    """AlpacaEval preference of one judgment, the display order undone."""
    if judgment.choice == "tie":
        return 1.5
    if judgment.choice == "skip":
        return None
    left = judgment.shown_first
    return float(left if judgment.choice == "left" else 3 - left)


def _open(directory: Path) -> tuple[list[BlindPair], Store]:
    pairs = dir_pairs(directory)
    if not (Path(directory) / STORE_FILE).is_file():
        raise RtuneError(f"{directory}: no judgments yet ({STORE_FILE} is missing)")
    return pairs, Store.in_dir(directory)


def _annotation(pair: BlindPair, judgment: Judgment) -> Annotation:
    return Annotation(
        instruction=pair.instruction,
        output_1=pair.output_1,
        generator_1=pair.generator_1,
        output_2=pair.output_2,
        generator_2=pair.generator_2,
        preference=preference(judgment),
        annotator=judgment.annotator,
        pair_id=pair.id,
        shown_first=judgment.shown_first,
        choice=judgment.choice,
        created_at=judgment.created_at,
    )


def human_annotations(directory: str | Path, *, include_skipped: bool = True) -> tuple[list[Annotation], int]:
    """(annotations in pair order, then annotator order; judgments of unknown pairs)."""
    pairs, store = _open(Path(directory))
    by_pair: dict[str, list[Judgment]] = defaultdict(list)
    for judgment in store.judgments():
        by_pair[judgment.pair_id].append(judgment)
    order = {name: rank for rank, name in enumerate(store.annotators())}
    rows = [
        _annotation(pair, judgment)
        for pair in pairs
        for judgment in sorted(by_pair.pop(pair.id, []), key=lambda j: order[j.annotator])
        if include_skipped or judgment.choice != "skip"
    ]
    return rows, sum(map(len, by_pair.values()))


def export_annotations(settings: ExportSettings) -> ExportResult:
    """Write the folder's judgments as an AlpacaEval `annotations.json` that `rtune metrics winrate` reads as is."""
    folder = settings.directory
    path = check_output(settings.out or folder / ANNOTATIONS_FILE, inputs=[folder / PAIRS_FILE, folder / STORE_FILE])
    rows, unknown = human_annotations(settings.directory, include_skipped=settings.include_skipped)
    write_annotations(path, rows)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.annotator] = counts.get(row.annotator, 0) + 1
    return ExportResult(
        path=path,
        n_rows=len(rows),
        n_pairs=len(dir_pairs(settings.directory)),
        n_skipped=sum(row.preference is None for row in rows),
        judgments=counts,
        n_unknown=unknown,
    )


def _report(rows: list[Annotation], source: str) -> WinRateReport | None:
    if not any(row.preference is not None for row in rows):
        return None
    return summarize(rows, source, length_controlled=False)


def _has_judgments(directory: str | Path) -> bool:
    return (Path(directory) / PAIRS_FILE).is_file() and (Path(directory) / STORE_FILE).is_file()


def human_winrates(directory: str | Path) -> dict[str, WinRateReport]:
    """Win rate of the model (output_2) over the reference, with its bootstrap 95% CI, per annotator."""
    if not _has_judgments(directory):
        return {}
    rows, _ = human_annotations(directory, include_skipped=False)
    reports = {
        name: _report([row for row in rows if row.annotator == name], f"{directory} ({name})")
        for name in dict.fromkeys(row.annotator for row in rows)
    }
    return {name: report for name, report in reports.items() if report is not None}


def human_winrate(directory: str | Path) -> WinRateReport | None:
    """The human win rate of an annotate folder with its bootstrap 95% CI; None when nobody judged a pair yet.

    With several annotators, each pair counts once, with the mean of its annotators' preferences,
    so the interval resamples pairs (not people's repeated views of the same pair).
    """
    if not _has_judgments(directory):
        return None
    rows, _ = human_annotations(directory, include_skipped=False)
    by_pair: dict[str, list[Annotation]] = defaultdict(list)
    for row in rows:
        by_pair[row.pair_id].append(row)
    pooled = [
        Annotation(
            **{
                **group[0].model_dump(exclude_unset=True),
                "preference": sum(r.preference for r in group) / len(group),
                "annotator": "+".join(r.annotator for r in group),
            }
        )
        for group in by_pair.values()
    ]
    return _report(pooled, str(directory))
