"""Stage kind `pairwise`: a judge compares a cell's answers with a reference cell's (`rtune.judges.pairwise`)."""

from __future__ import annotations

from rtune.errors import RtuneError
from rtune.judges.pairwise import PairwiseSettings
from rtune.judges.pairwise_protocols import Annotator, resolve_annotator
from rtune.pipeline.experiment import Method
from rtune.pipeline.kinds.generate import InstructionSet
from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.report.figures import Section, bars, ci_text
from rtune.winrate.schema import WinRateReport


class PairwiseSpec(InstructionSet):
    judge: str
    reference: str = "it"  # a method (same model, dataset, mixture, seed) or a full cell name
    methods: list[Method] | None = ["rt"]
    annotator: Annotator | None = None  # alpaca_eval_2 or rtune; default: AlpacaEval 2's when alpaca-eval is installed
    mode: str = PairwiseSettings.model_fields["mode"].default  # rtune's annotator: weighted or parsed


class PairwiseStageResult(WinRateReport):
    reference: str  # the reference cell


def pairs(builder, spec: PairwiseSpec) -> list:
    """(cell, reference cell) for every cell the evaluation applies to: the reference is a cell name or a
    sibling method."""
    by_name = {cell.name: cell for cell in builder.cells}
    found = []
    for cell in builder.chosen(spec):
        reference = by_name.get(spec.reference) or by_name.get(cell.sibling(spec.reference))
        if reference is not None and reference.name != cell.name:
            found.append((cell, reference))
    if not found:
        raise RtuneError(
            f"evals.pairwise: reference '{spec.reference}' matches no cell to compare with "
            f"(give a method in `methods`, or a cell name such as {builder.cells[0].name})"
        )
    return found


def annotator_settings(spec: PairwiseSpec) -> dict:
    """What decides the annotator's answers: rtune's mode, or AlpacaEval's config as installed (version, prompt)."""
    annotator = resolve_annotator(spec.annotator, spec.mode)
    if annotator == "rtune":
        return {"mode": spec.mode}
    from rtune.judges.alpaca_eval_annotator import load_annotator

    return {"annotator": annotator, "alpaca_eval": load_annotator().identity()}


def plan(builder, spec: PairwiseSpec) -> None:
    for cell, reference in pairs(builder, spec):
        own, theirs = builder.generation(cell, spec.instructions), builder.generation(reference, spec.instructions)
        settings = {"judge": spec.judge, **annotator_settings(spec), "limit": spec.limit, "reference": reference.name}
        builder.add(Stage(f"{cell.name}/pairwise", "pairwise", cell, {"settings": settings}, run, (own, theirs)))


def run(ctx: Context) -> PairwiseStageResult:
    from rtune.judges.pairwise import run as judge
    from rtune.progress import Bar

    s = ctx.settings
    own, theirs = (ctx.dirs[key] / "outputs.json" for key in ctx.stage.deps)
    settings = PairwiseSettings(
        outputs=own,
        reference=theirs,
        judge=s["judge"],
        out=ctx.work,
        limit=s["limit"],
        annotator=s.get("annotator", "rtune"),
        mode=s.get("mode", "weighted"),
        **ctx.env.server.model_dump(),
    )
    with Bar(ctx.console) as bar:
        report = judge(settings, bar)
    return PairwiseStageResult(**report.metrics.model_dump(), reference=s["reference"])


def section(stages: list) -> Section:
    table = Section(
        "Pairwise win rate vs the reference",
        "Win rate in % (bootstrap 95% CI); LC = length-controlled (± standard error).",
        ["Cell", "Reference", "Win rate", "LC win rate", "n"],
    )
    win, lc = [], []
    for stage in stages:
        r = stage.result
        lc_value, lc_se = r.length_controlled_winrate, r.lc_standard_error
        table.rows.append(
            [
                stage.cell,
                r.reference,
                ci_text(r.win_rate, r.ci_low, r.ci_high, 1),
                ci_text(lc_value, digits=1) + (f" ± {lc_se:.1f}" if lc_se is not None else ""),
                str(r.n),
            ]
        )
        win.append((r.win_rate, r.ci_low, r.ci_high))
        half = (lc_se or 0) * 1.96
        lc.append((lc_value, lc_value - half, lc_value + half) if lc_value is not None else (0.0, 0.0, 0.0))
    series = (
        {"win rate": win, "LC win rate": lc}
        if any(s.result.length_controlled_winrate is not None for s in stages)
        else {"win rate": win}
    )
    table.figures.append(
        ("Win rate and LC win rate vs the reference (%)", bars([s.cell for s in stages], series, "%", 50.0))
    )
    return table


KIND = register(Kind("pairwise", PairwiseStageResult, run, PairwiseSpec, plan, section))
