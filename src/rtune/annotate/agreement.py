"""Agreement between raters: people in an annotate folder, and any AlpacaEval annotations file.

Every preference becomes a verdict: "1" (reference better, preference < 1.5), "2" (model better,
> 1.5) or "tie" (1.5, or AlpacaEval's legacy 0); a weighted LLM judge's continuous preference is
thereby rounded to the side it leans to. Skipped or unannotated items are not verdicts. Two
raters are compared on the items both gave a verdict for: percent agreement, and Cohen's kappa
(scikit-learn's `cohen_kappa_score`, unweighted, over the three verdicts), with the count.

People are matched by pair id; a file's rows by instruction, and when a row carries both output
texts they must be the pair's own (a file comparing other outputs is no evidence either way: such
rows are counted as mismatched and left out). A file whose rows name several `annotator`s (another
folder's export, say) gives one rater per annotator.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel

from rtune.annotate.export import human_annotations
from rtune.annotate.pairs import BlindPair, dir_pairs
from rtune.annotate.settings import AgreementSettings
from rtune.winrate.annotations import Annotation, read_annotations

VERDICTS = ("1", "tie", "2")


class RaterAgreement(BaseModel):
    rater_a: str
    rater_b: str
    n_shared: int  # items both raters gave a verdict for
    percent_agreement: float | None  # % of shared items with the same verdict; None without shared items
    cohen_kappa: float | None  # None without shared items, or when chance agreement is 1 (kappa undefined)
    n_mismatched: int = 0  # file rows whose output texts are not the pair's (left out)


class AgreementResult(BaseModel):
    people: list[str]
    files: dict[str, list[str]]  # raters read from each --with file
    comparisons: list[RaterAgreement]


def verdict(preference: float | None) -> str | None:
    if preference is None or math.isnan(preference):
        return None
    if preference == 0 or preference == 1.5:
        return "tie"
    return "1" if preference < 1.5 else "2"


def compare(a: dict[str, str], b: dict[str, str]) -> tuple[int, float | None, float | None]:
    """(shared items, percent agreement, Cohen's kappa) of two raters' verdicts keyed by item."""
    from sklearn.metrics import cohen_kappa_score

    shared = [key for key in a if key in b]
    if not shared:
        return 0, None, None
    left, right = [a[key] for key in shared], [b[key] for key in shared]
    agree = 100.0 * sum(x == y for x, y in zip(left, right, strict=True)) / len(shared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined kappa (one verdict throughout) comes back nan
        kappa = float(cohen_kappa_score(left, right, labels=list(VERDICTS)))
    return len(shared), agree, (None if math.isnan(kappa) else kappa)


def _file_raters(path: Path, pairs: list[BlindPair]) -> tuple[dict[str, dict[str, str]], int]:
    """Verdicts per rater keyed by pair id, and the number of mismatched rows."""
    by_instruction: dict[str, list[BlindPair]] = defaultdict(list)
    for pair in pairs:
        by_instruction[pair.instruction].append(pair)
    rows = read_annotations(path)
    names = {row.model_extra.get("annotator") if row.model_extra else None for row in rows}
    preferences: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    mismatched = 0
    for row in rows:
        annotator = row.model_extra.get("annotator") if row.model_extra else None
        rater = f"{path}:{annotator}" if len(names) > 1 else str(path)
        for pair in by_instruction.get(row.instruction, []):
            texts = (row.output_1, row.output_2)
            if None not in texts and texts != (pair.output_1, pair.output_2):
                mismatched += 1
                continue
            if row.preference is not None:
                preferences[rater][pair.id].append(1.5 if row.preference == 0 else row.preference)
    raters = {
        rater: {key: v for key, values in items.items() if (v := verdict(sum(values) / len(values)))}
        for rater, items in preferences.items()
    }
    return raters, mismatched


def _people(rows: list[Annotation]) -> dict[str, dict[str, str]]:
    people: dict[str, dict[str, str]] = {}
    for row in rows:
        people.setdefault(row.annotator, {})
        if (v := verdict(row.preference)) is not None:
            people[row.annotator][row.pair_id] = v
    return people


def agreement(settings: AgreementSettings) -> AgreementResult:
    """Every pair of people in the folder, then every person against every rater of each file."""
    pairs = dir_pairs(settings.directory)
    rows, _ = human_annotations(settings.directory)
    people = _people(rows)
    names = list(people)
    comparisons = [
        RaterAgreement(
            rater_a=a,
            rater_b=b,
            **dict(zip(("n_shared", "percent_agreement", "cohen_kappa"), compare(people[a], people[b]), strict=True)),
        )
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    files: dict[str, list[str]] = {}
    for path in settings.with_files:
        raters, mismatched = _file_raters(Path(path), pairs)
        files[str(path)] = list(raters)
        for rater, verdicts in raters.items():
            for name in names:
                n, agree, kappa = compare(people[name], verdicts)
                comparisons.append(
                    RaterAgreement(
                        rater_a=name,
                        rater_b=rater,
                        n_shared=n,
                        percent_agreement=agree,
                        cohen_kappa=kappa,
                        n_mismatched=mismatched,
                    )
                )
    return AgreementResult(people=names, files=files, comparisons=comparisons)
