"""The answers a run judges: generated here (resumably) or matched from an AlpacaEval-style outputs file.

Answers to harmful prompts are harmful material, so every file written here sits in the run directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from rtune.errors import RtuneError
from rtune.evals.safety.sets import SafetyItem
from rtune.generation.base import DecodingParams, Generator, stream_results
from rtune.io import ResumableLog, read_json
from rtune.progress import SILENT, Progress
from rtune.prompting import PromptFormat


def _set_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def output_rows(items: list[SafetyItem], outputs: dict[str, str], generator: str) -> list[dict]:
    """The outputs-file rows for `items`: what `match_outputs` reads back by id."""
    return [
        {
            "id": item.id,
            "instruction": item.prompt,
            "output": outputs[item.id],
            "generator": generator,
            "dataset": item.set,
            "subset": item.subset,
        }
        for item in items
    ]


def match_outputs(items: list[SafetyItem], path: str | Path) -> dict[str, str]:
    """Outputs for `items` from a JSON list of {instruction, output[, set|dataset][, id]}.

    Rows are matched by our item id when they carry one, else by (set, instruction) — the set
    field is optional and compared loosely ("MaliciousInstruct" = "malicious_instruct").
    """
    rows = read_json(path)
    if not isinstance(rows, list):
        raise RtuneError(f"{path}: expected a JSON list of {{instruction, output}} objects")
    by_id: dict[str, str] = {}
    by_prompt: dict[tuple[str, str], str] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not all(isinstance(row.get(field), str) for field in ("instruction", "output")):
            raise RtuneError(f"{path}: item {number}: expected an object with string fields 'instruction' and 'output'")
        if row.get("id") is not None:
            by_id[str(row["id"])] = row["output"]
        key = (_set_key(str(row.get("set") or row.get("dataset") or "")), row["instruction"].strip())
        if by_prompt.get(key, row["output"]) != row["output"]:
            raise RtuneError(f"{path}: item {number}: instruction repeated with a different output")
        by_prompt[key] = row["output"]
        by_prompt.setdefault(("", key[1]), row["output"])
    outputs, missing = {}, []
    for item in items:
        prompt = item.prompt.strip()
        found = by_id.get(item.id, by_prompt.get((_set_key(item.set), prompt), by_prompt.get(("", prompt))))
        if found is None:
            missing.append(item)
        else:
            outputs[item.id] = found
    if missing:
        raise RtuneError(
            f"{path}: no output for {len(missing)} of {len(items)} prompts (first: {missing[0].id}); "
            "choose the sets the file covers with --sets"
        )
    return outputs


def generate_answers(
    items: list[SafetyItem],
    generator: Generator,
    log: Path,
    prompt: PromptFormat,
    params: DecodingParams,
    progress: Progress = SILENT,
    say: Callable[[str], None] = lambda message: None,
) -> dict[str, str]:
    """Answers for every item, appended to `log` as each one finishes; items already in `log` are not asked again."""
    answers = ResumableLog(log, key="id")
    done = {key: row["output"] for key, row in answers.done().items()}
    pending = [item for item in items if item.id not in done]
    if done:
        say(f"resuming: {len(items) - len(pending)} of {len(items)} answers already generated")
    progress.start("generate", len(pending))
    for index, result in stream_results(generator, [prompt.request(item.prompt, params) for item in pending]):
        item = pending[index]
        answers.append({"id": item.id, "output": prompt.clean(result.text), "finish_reason": result.finish_reason})
        done[item.id] = prompt.clean(result.text)
        progress.advance()
    return {item.id: done[item.id] for item in items}
