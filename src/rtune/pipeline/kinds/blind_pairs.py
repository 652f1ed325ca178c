"""Stage kind `blind_pairs`: a cell's answers and a reference cell's, paired in a seeded order, for people to judge.

The stage writes `pairs.json` (`rtune.annotate.pairs`). People judge it with
`rtune annotate --pairs RUN/stages/<cell>/blind_pairs/pairs.json --out RUN/human/<cell>` — the
judgments live outside the stage folder, so a rerun of the stage can never touch them — and the
report shows their win rate, with its CI, once there are any.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from rtune.pipeline.kinds.pairwise import PairwiseSpec, pairs
from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.report.figures import Section, ci_text

HUMAN_DIR = "human"  # RUN/human/<cell>: where `rtune annotate --out` keeps people's judgments of a cell's pairs


class BlindPairsSpec(PairwiseSpec):
    judge: str = "people"  # not asked: people judge the file
    seed: int = 0  # draws which answer is shown first


class BlindPairsResult(BaseModel):
    n: int
    reference: str
    pairs_file: str  # relative to the run directory


def plan(builder, spec: BlindPairsSpec) -> None:
    for cell, reference in pairs(builder, spec):
        own, theirs = builder.generation(cell, spec.instructions), builder.generation(reference, spec.instructions)
        builder.add(
            Stage(
                f"{cell.name}/blind_pairs",
                "blind_pairs",
                cell,
                {"settings": {"limit": spec.limit, "seed": spec.seed, "reference": reference.name}},
                run,
                (own, theirs),
            )
        )


def run(ctx: Context) -> BlindPairsResult:
    from rtune.annotate.pairs import PAIRS_FILE, pairs_from_outputs, write_pairs

    s = ctx.settings
    own, theirs = (ctx.dirs[key] / "outputs.json" for key in ctx.stage.deps)
    found = pairs_from_outputs(own, theirs, seed=s["seed"], limit=s["limit"])
    write_pairs(ctx.work / PAIRS_FILE, found)
    return BlindPairsResult(n=len(found), reference=s["reference"], pairs_file=f"stages/{ctx.stage.key}/{PAIRS_FILE}")


def section(stages: list) -> Section:
    from rtune.annotate.export import human_winrate

    table = Section(
        "Human judgments",
        "Blind pairs for people to judge (`rtune annotate --pairs FILE --out RUN/human/CELL`) "
        "and, once judged, the human win rate in % against the reference with its bootstrap 95% CI.",
        ["Cell", "Reference", "Pairs", "Human win rate", "Judged"],
    )
    for stage in stages:
        run_dir = stage.folder.parents[len(Path(stage.key).parts)]  # RUN/stages/<key> -> RUN
        judged = run_dir / HUMAN_DIR / stage.cell
        report = human_winrate(judged) if judged.is_dir() else None
        table.rows.append(
            [
                stage.cell,
                stage.result.reference,
                str(stage.result.n),
                ci_text(report.win_rate, report.ci_low, report.ci_high, 1) if report else "not judged yet",
                str(report.n) if report else "0",
            ]
        )
    return table


KIND = register(Kind("blind_pairs", BlindPairsResult, run, BlindPairsSpec, plan, section))
