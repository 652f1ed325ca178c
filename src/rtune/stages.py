"""The stage kinds `rtune run` chains: what each one hashes, and what it runs.

Each action calls the stage's own module (data sources, training, the generation engine, the
likelihood / core / safety evaluations, the judge commands) and returns a small summary that
the runner stores as `result.json`. Settings an action uses are read from `stage.inputs`, so what
is hashed is exactly what decides the result.
"""

from __future__ import annotations

from pathlib import Path

from rtune.config import find_config
from rtune.errors import RtuneError
from rtune.evals.likelihood import DEFAULT_RECORDS
from rtune.experiment import Cell, Experiment
from rtune.io import atomic_write_json, read_json, sha256_file
from rtune.runner import Context, Plan, Stage

DEMO_TRAIN = DEFAULT_RECORDS.with_name("train.jsonl")
PACKAGED_FILES = {"demo": DEMO_TRAIN, "heldout": DEFAULT_RECORDS}


def data_dir(experiment: Experiment) -> Path | None:
    from rtune.data.sources import resolve_data_dir

    return resolve_data_dir(experiment.path(experiment.data_dir) if experiment.data_dir else None)


def resolve_file(experiment: Experiment, name: str) -> str:
    """A packaged name (`demo`, `heldout`) or a path relative to the experiment file; other names pass through."""
    if name in PACKAGED_FILES:
        return str(PACKAGED_FILES[name])
    path = experiment.path(name)
    return str(path) if path.suffix.lower() in {".jsonl", ".json", ".csv"} else name


def content_fingerprint(experiment: Experiment, name: str) -> str | dict:
    """What identifies a data source's content: the file's sha256, or the hub id when only the hub has it."""
    from rtune.data.sources import SOURCES
    from rtune.generation.instructions import NAMED_INPUTS

    resolved = resolve_file(experiment, name)
    if Path(resolved).suffix.lower() in {".jsonl", ".json", ".csv"}:
        if not Path(resolved).is_file():
            raise RtuneError(f"{resolved}: no such data file (named in experiment '{experiment.name}')")
        return sha256_file(resolved)
    root = data_dir(experiment)
    candidates = SOURCES[name].local_files if name in SOURCES else (str(NAMED_INPUTS[name]),) if name in NAMED_INPUTS else ()
    for relative in candidates:
        if root is not None and (root / relative).is_file():
            return sha256_file(root / relative)
    return {"hub": name}


def recipe_path(experiment: Experiment) -> Path | None:
    """The training recipe: beside the experiment file, else a shipped config of that name."""
    name = experiment.training.config
    if name is None:
        return None
    beside = experiment.path(name)
    return beside if beside.is_file() else find_config(name)


# ---------------------------------------------------------------------------------------------
# Data and training
# ---------------------------------------------------------------------------------------------


def model_source(plan: Plan, experiment: Experiment, cell: Cell) -> dict:
    """How a cell's model is identified: an untrained spec by its fingerprint, a trained one by its train stage."""
    from rtune.models import model_fingerprint

    if not cell.trained:
        spec = experiment.models[cell.model]
        return {"spec": spec, "fingerprint": model_fingerprint(spec)}
    entry = experiment.datasets[cell.dataset]
    data_key = plan.add(Stage(
        f"data/{cell.dataset}" + (f"+safety{cell.safety}" if cell.safety else ""), "data", None,
        {"settings": {"source": entry.source, "max_examples": entry.max_examples, "seed": entry.seed, "safety": cell.safety,
                      "safety_source": experiment.safety_source},
         "content": content_fingerprint(experiment, entry.source),
         "safety_content": content_fingerprint(experiment, experiment.safety_source) if cell.safety else None},
        build_data))
    return {"trained_by": plan.add(train_stage(experiment, cell, data_key))}


def build_data(ctx: Context) -> dict:
    from rtune.data.records import keep_nonempty, write_records
    from rtune.data.safety_mix import mix_records
    from rtune.data.sources import build_records

    s, root = ctx.settings, data_dir(ctx.experiment)
    built = build_records(resolve_file(ctx.experiment, s["source"]), root, s["max_examples"], s["seed"])
    records = keep_nonempty(built.records, strict=False, where=s["source"]).records
    added = 0
    if s["safety"]:
        refusals = build_records(resolve_file(ctx.experiment, s["safety_source"]), root)
        mix = mix_records(records, keep_nonempty(refusals.records, strict=False, where=s["safety_source"]).records,
                          s["safety"], "keyword", s["seed"], s["safety_source"])
        records, added = mix.records, mix.safety_added
    write_records(ctx.work / "records.jsonl", records)
    return {"records": len(records), "safety_added": added, "note": built.note}


def train_stage(experiment: Experiment, cell: Cell, data_key: str) -> Stage:
    from rtune.config import load_train_config
    from rtune.models import model_fingerprint

    spec = experiment.models[cell.model]
    config = load_train_config(recipe_path(experiment), {**experiment.training.overrides, "method": cell.method,
                                                          "model": spec, "seed": cell.seed})
    settings = config.model_dump(exclude={"data"})
    return Stage(f"{cell.name}/train", "train", cell, {"settings": settings, "model_fingerprint": model_fingerprint(spec)},
                 run_training, (data_key,))


def run_training(ctx: Context) -> dict:
    from rtune.config import TrainConfig
    from rtune.training import train

    data_key = ctx.stage.deps[0]
    config = TrainConfig.model_validate({**ctx.settings, "data": str(ctx.dirs[data_key] / "records.jsonl")})
    result = train(config, ctx.work)
    return {"steps": result.steps, "final_loss": result.final_loss}


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def _decoding(experiment: Experiment, max_new_tokens: int | None = None) -> dict:
    g = experiment.generation
    return {"backend": g.backend, "batch_size": g.batch_size, "max_new_tokens": max_new_tokens or g.max_new_tokens}


def generate_key(cell: Cell, instructions: str) -> str:
    return f"{cell.name}/generate-{Path(instructions).stem}"


def generate_stage(experiment: Experiment, cell: Cell, source: dict, deps: tuple, instructions: str, limit: int | None) -> Stage:
    return Stage(generate_key(cell, instructions), "generate", cell,
                 {"model": source, "settings": {"method": cell.method, "instructions": instructions, "limit": limit,
                                                **_decoding(experiment)},
                  "content": content_fingerprint(experiment, instructions)}, run_generation, deps)


def _prompting(method: str):
    """(request builder, output cleaner): the inference template for base/it/rt, URIAL prompts otherwise."""
    from rtune.evals import urial
    from rtune.generation import GenerationRequest
    from rtune.generation.instructions import PromptStyle
    from rtune.templates import inference_prompt

    if method in urial.URIAL_MODES:
        style = PromptStyle(urial_template=urial.load_template(method))
        return style.request, style.clean
    return (lambda text, params: GenerationRequest(prompt=inference_prompt(text), params=params)), str.strip


def _generate(ctx: Context, prompts: list[str], label: str) -> list[str]:
    from rtune.generation import DecodingParams, from_spec
    from rtune.generation.progress import generate_with_progress

    s = ctx.settings
    request, clean = _prompting(s["method"])
    params = DecodingParams(max_new_tokens=s["max_new_tokens"])
    generator = from_spec(ctx.model(), backend=s["backend"], cache=ctx.work / "generation_cache.sqlite", batch_size=s["batch_size"])
    results = generate_with_progress(generator, [request(text, params) for text in prompts], label, ctx.console)
    return [clean(result.text) for result in results]


def run_generation(ctx: Context) -> dict:
    from rtune.generation.instructions import load_instructions, output_row

    s = ctx.settings
    items = load_instructions(resolve_file(ctx.experiment, s["instructions"]), data_dir(ctx.experiment), s["limit"])
    outputs = _generate(ctx, [item.text for item in items], f"generate {Path(s['instructions']).stem}")
    atomic_write_json(ctx.work / "outputs.json", [output_row(item, output, ctx.stage.cell.name) for item, output in zip(items, outputs)])
    return {"n": len(items)}


# ---------------------------------------------------------------------------------------------
# Evaluations
# ---------------------------------------------------------------------------------------------


class _Bar:
    """A rich progress bar behind the `start`/`advance` protocol the evaluations report through."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[cyan]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=console, transient=True)
        self.task = None

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def start(self, label: str, total: int) -> None:
        self.task = self.progress.add_task(label, total=total)

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def update(self, done: int, total: int) -> None:
        if self.task is None:
            self.start("score", total)
        self.progress.update(self.task, completed=done, total=total)


def likelihood_stage(experiment: Experiment, cell: Cell, source: dict, deps: tuple) -> Stage:
    spec = experiment.evals.likelihood
    return Stage(f"{cell.name}/likelihood", "likelihood", cell,
                 {"model": source, "settings": spec.model_dump(exclude={"methods", "cells"}),
                  "content": content_fingerprint(experiment, spec.records)}, run_likelihood, deps)


def run_likelihood(ctx: Context) -> dict:
    from rtune.data.records import read_records
    from rtune.evals.likelihood import LikelihoodSettings, evaluate_likelihood

    s = ctx.settings
    path = resolve_file(ctx.experiment, s["records"])
    settings = LikelihoodSettings(distractors=s["distractors"], max_response_tokens=s["max_response_tokens"], headline=s["headline"])
    with _Bar(ctx.console) as bar:
        records = read_records(path).records[: s["limit"]]
        result = evaluate_likelihood(ctx.model(), records, settings, s["records"], bar.update)
    return result.model_dump(mode="json")


def core_content(experiment: Experiment, tasks: list[str]) -> dict:
    """What a core stage reads: per task, a hash of its items (local copies), else the hub names."""
    from dataclasses import asdict

    from rtune.evals.core_tasks import MC_TASKS, load_gsm8k
    from rtune.io import stable_hash

    root = data_dir(experiment)
    if root is None:
        return {"hub": sorted(tasks)}
    content = {}
    for name in tasks:
        task = MC_TASKS.get(name)
        items = load_gsm8k(root) if task is None else task.load(root) + (task.load_fewshot(root) if task.load_fewshot else [])
        content[name] = stable_hash([asdict(item) for item in items])
    return content


def core_stage(experiment: Experiment, cell: Cell, source: dict, deps: tuple, content: dict) -> Stage:
    """`content` is `core_content(...)`, computed once per plan."""
    return Stage(f"{cell.name}/core", "core", cell, {"model": source, "settings": experiment.evals.core.model_dump(exclude={"methods", "cells"}),
                                                     "content": content}, run_core, deps)


def run_core(ctx: Context) -> dict:
    from rtune.evals.core import CoreEvalSettings, run_core_eval

    s, root = ctx.settings, data_dir(ctx.experiment)
    settings = CoreEvalSettings(model=ctx.model(), tasks=tuple(s["tasks"]), limit=s["limit"], num_fewshot=s["num_fewshot"],
                                data_dir=str(root) if root else None)
    with _Bar(ctx.console) as bar:
        return run_core_eval(settings, ctx.work / "core.json", bar)


def safety_content(experiment: Experiment) -> str | dict:
    """What the safety stages read: a hash of every prompt of the chosen sets (local copies), else the hub names."""
    from rtune.evals.safety import load_items
    from rtune.io import stable_hash

    sets, root = tuple(experiment.evals.safety.sets), data_dir(experiment)
    return stable_hash([item.model_dump() for item in load_items(sets, root, None, 0)]) if root else {"hub": list(sets)}


def safety_generate_stage(experiment: Experiment, cell: Cell, source: dict, deps: tuple, content: str | dict) -> Stage:
    """`content` is `safety_content(...)`, computed once per plan; the judge stage depends on this one, so it reaches its key."""
    spec = experiment.evals.safety
    return Stage(f"{cell.name}/generate-safety", "generate", cell,
                 {"model": source, "settings": {"method": cell.method, "sets": spec.sets, "limit": spec.limit,
                                                **_decoding(experiment, spec.max_new_tokens)}, "content": content},
                 run_safety_generation, deps)


def run_safety_generation(ctx: Context) -> dict:
    from rtune.evals.safety import load_items

    s = ctx.settings
    items = load_items(tuple(s["sets"]), data_dir(ctx.experiment), s["limit"], seed=0)
    outputs = _generate(ctx, [item.prompt for item in items], "generate safety")
    atomic_write_json(ctx.work / "outputs.json", [
        {"id": item.id, "instruction": item.prompt, "output": output, "generator": ctx.stage.cell.name,
         "dataset": item.set, "subset": item.subset} for item, output in zip(items, outputs)])
    return {"n": len(items)}


def safety_stage(experiment: Experiment, cell: Cell, outputs_key: str) -> Stage:
    spec = experiment.evals.safety
    return Stage(f"{cell.name}/safety", "safety", cell, {"settings": {"sets": spec.sets, "judge": spec.judge, "limit": spec.limit}},
                 run_safety, (outputs_key,))


def run_safety(ctx: Context) -> dict:
    from rtune.evals.safety import SafetyRun, run_safety_eval

    s = ctx.settings
    run = SafetyRun(outputs=str(ctx.dirs[ctx.stage.deps[0]] / "outputs.json"), sets=tuple(s["sets"]), judge=s["judge"], limit=s["limit"])
    return run_safety_eval(run, ctx.work, data_dir(ctx.experiment), say=ctx.console.print).model_dump(mode="json")


def _cli(*args: str) -> None:
    """Run one `rtune` command in this process: the judge stages are exactly what the CLI does."""
    from rtune.cli import app

    app([str(arg) for arg in args], standalone_mode=False)


def pairwise_stage(experiment: Experiment, cell: Cell, reference: Cell, own: str, theirs: str) -> Stage:
    spec = experiment.evals.pairwise
    return Stage(f"{cell.name}/pairwise", "pairwise", cell,
                 {"settings": {"judge": spec.judge, "mode": spec.mode, "limit": spec.limit, "reference": reference.name}},
                 run_pairwise, (own, theirs))


def run_pairwise(ctx: Context) -> dict:
    s = ctx.settings
    own, theirs = (ctx.dirs[key] / "outputs.json" for key in ctx.stage.deps)
    _cli("judge", "pairwise", "--outputs", own, "--reference", theirs, "--judge", s["judge"], "--out", ctx.work,
         "--mode", s["mode"], *(["--limit", s["limit"]] if s["limit"] else []))
    return {**read_json(ctx.work / "run.json")["metrics"], "reference": s["reference"]}


def aspects_stage(experiment: Experiment, cell: Cell, outputs_key: str) -> Stage:
    spec = experiment.evals.aspects
    return Stage(f"{cell.name}/aspects", "aspects", cell, {"settings": {"judge": spec.judge, "limit": spec.limit}},
                 run_aspects, (outputs_key,))


def run_aspects(ctx: Context) -> dict:
    s = ctx.settings
    _cli("judge", "aspects", "--outputs", ctx.dirs[ctx.stage.deps[0]] / "outputs.json", "--judge", s["judge"],
         "--out", ctx.work, *(["--limit", s["limit"]] if s["limit"] else []))
    return read_json(ctx.work / "summary.json")
