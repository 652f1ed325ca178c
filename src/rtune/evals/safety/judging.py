"""Refusal verdicts for every answer, logged per item so a killed run resumes where it stopped."""

from __future__ import annotations

from pathlib import Path

from rtune.evals.safety.sets import SafetyItem
from rtune.io import ResumableLog
from rtune.judges.refusal import RefusalCase, RefusalJudge
from rtune.progress import SILENT, Progress

JUDGE_CHUNK = 64  # items judged between two appends to the log


def judge_outputs(
    items: list[SafetyItem], outputs: dict[str, str], judge: RefusalJudge, log: Path, progress: Progress = SILENT
) -> list[dict]:
    """One result row per item (item, output, judge name, verdict), in item order; items already in `log` are kept."""
    results = ResumableLog(log, key="id")
    done = results.done()
    pending = [item for item in items if item.id not in done]
    progress.start("judge", len(pending))
    for start in range(0, len(pending), JUDGE_CHUNK):
        chunk = pending[start : start + JUDGE_CHUNK]
        verdicts = judge.judge([RefusalCase(item.prompt, outputs[item.id]) for item in chunk])
        for item, verdict in zip(chunk, verdicts, strict=True):
            row = {**item.model_dump(), "output": outputs[item.id], "judge": judge.name, **verdict.model_dump()}
            results.append(row)
            done[item.id] = row
        progress.advance(len(chunk))
    return [done[item.id] for item in items]
