"""Which evaluation and training protocols an experiment uses, for `rtune run --dry-run` (docs/fidelity.md).

Settings come from the planned stages (defaults resolved, as they will run); prompt files from the
experiment, by the name it gives them: unset means rtune's own prompt.
"""

from __future__ import annotations

from rtune.pipeline.plan import Plan

STAGE_SETTINGS = {  # stage kind → the settings that pick a protocol
    "train": ("loss_normalization", "group_by_length"),
    "core": ("protocol",),
    "pairwise": ("annotator",),
}
PROMPT_FILES = {  # where in the experiment a prompt file is named
    ("evals", "aspects", "template"): "aspects template",
    ("evals", "aspects", "safety_template"): "aspects safety template",
    ("evals", "safety", "judge_prompt"): "refusal judge prompt",
}


def _at(tree: dict, path: tuple[str, ...]):
    for name in path:
        tree = tree.get(name) if isinstance(tree, dict) else None
    return tree


def protocol_rows(experiment, plan: Plan) -> list[tuple[str, str]]:
    """(choice, value) pairs, each once, in plan order."""
    rows: dict[tuple[str, str], None] = {}
    for stage in plan.stages.values():
        for name in STAGE_SETTINGS.get(stage.kind, ()):
            value = stage.inputs.get("settings", {}).get(name)
            if value is not None:
                rows[(f"{stage.kind} {name}", str(value))] = None
    tree = experiment.model_dump(mode="json")
    for path, label in PROMPT_FILES.items():
        section = _at(tree, path[:-1])
        if section is not None and section.get("judge") != "keyword":  # an LLM judge reads its prompt
            rows[(label, _at(tree, path) or "rtune's own")] = None
    for method, file in sorted((_at(tree, ("generation", "urial_prompts")) or {}).items()):
        rows[(f"{method} prompt", file)] = None
    for name, dataset in sorted((tree.get("datasets") or {}).items()):
        if isinstance(dataset, dict) and dataset.get("refine"):
            rows[(f"{name} refinement prompt", dataset["refine"].get("prompt_file") or "rtune's own")] = None
    return list(rows)
