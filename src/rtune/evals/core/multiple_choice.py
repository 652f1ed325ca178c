"""The multiple-choice tasks: every item's choices scored by log-likelihood, acc and acc_norm as lm-eval defines them.

Inside a unit, scored items are appended to `<unit>.partial.jsonl` among the parts as each chunk
finishes, so a killed run loses at most one chunk; rows written under another unit key (another
model, limit, template…) are ignored.
"""

from __future__ import annotations

from rtune.errors import RtuneError
from rtune.evals.choice_scorer import ChoiceScore, ScoreRequest
from rtune.evals.core.prompts import mc_request
from rtune.evals.core.results import UnitResult
from rtune.evals.core.session import Session
from rtune.evals.core.tasks import MCItem, MCTask
from rtune.io import ResumableLog

SCORE_CHUNK = 256  # items scored between appends to a unit's partial file


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # first of equal maxima, as numpy


def mc_outcome(item: MCItem, scores: list[ChoiceScore]) -> tuple[int, int]:
    """(pred, pred_norm): argmax of log-likelihood, and of log-likelihood per character of the choice.

    pred_norm is lm-eval's acc_norm prediction; ties go to the first choice, as numpy's argmax.
    """
    logprobs = [s.logprob for s in scores]
    return argmax(logprobs), argmax([lp / len(choice) for lp, choice in zip(logprobs, item.choices, strict=True)])


def _sample(name: str, doc_id: int, item: MCItem, request: ScoreRequest, scores: list[ChoiceScore], metrics) -> dict:
    pred, pred_norm = mc_outcome(item, scores)
    hits = {"acc": float(pred == item.gold), "acc_norm": float(pred_norm == item.gold)}
    return {
        "task": name,
        "doc_id": doc_id,
        "id": item.id,
        "context": request.context,
        "continuations": list(request.continuations),
        "target": item.gold,
        "logprobs": [s.logprob for s in scores],
        "is_greedy": [s.is_greedy for s in scores],
        "n_tokens": [s.n_tokens for s in scores],
        "pred": pred,
        "pred_norm": pred_norm,
        **{m: hits[m] for m in metrics},
    }


def _score_unit(
    session: Session, name: str, task: MCTask, items: list[MCItem], requests: list[ScoreRequest], key: str
) -> list[dict]:
    """Per-item samples of one unit, resumed from and appended to its partial file."""
    log = ResumableLog(session.parts / f"{name}.partial.jsonl", key="doc_id")
    done = {row["doc_id"]: row for row in log.done().values() if row.pop("key", None) == key}
    session.progress.advance(len(done))
    todo = [doc_id for doc_id in range(len(items)) if doc_id not in done]
    for start in range(0, len(todo), SCORE_CHUNK):
        chunk = todo[start : start + SCORE_CHUNK]
        scores = session.scorer.score([requests[i] for i in chunk], progress=session.progress.advance)
        for doc_id, item_scores in zip(chunk, scores, strict=True):
            done[doc_id] = _sample(name, doc_id, items[doc_id], requests[doc_id], item_scores, task.metrics)
            log.append({"key": key, **done[doc_id]})
    log.path.unlink(missing_ok=True)
    return [done[doc_id] for doc_id in range(len(items))]


def _shots(session: Session, task: MCTask) -> tuple[int, list[MCItem]]:
    """(shots per item, few-shot pool); 0 where the task has no few-shot split (recorded so in n-shot)."""
    requested = session.settings.num_fewshot or 0
    if requested == 0 or task.load_fewshot is None:
        return 0, []
    return requested, task.load_fewshot(session.data_dir)


def evaluate_mc_task(session: Session, task: MCTask) -> list[UnitResult]:
    """One result per unit (MMLU: per subject), saved ones loaded, in the task's item order."""
    items = task.load(session.data_dir)
    n_shot, pool = _shots(session, task)
    by_unit: dict[str, list[MCItem]] = {}
    for item in items:
        by_unit.setdefault(f"mmlu_{item.subject}" if item.subject else task.name, []).append(item)
    limit = session.settings.limit_of(task.name)
    units, pending = [], []
    for name, unit_items in by_unit.items():
        key = session.unit_key(name, n_shot, limit)
        saved = session.load_part(name, key)
        if saved is not None:
            units.append(saved)
        else:
            pending.append((name, unit_items, key))
    session.progress.start(task.name, sum(len(unit_items[:limit]) for _, unit_items, _ in pending))
    for name, unit_items, key in pending:
        subject = unit_items[0].subject
        shots = [shot for shot in pool if shot.subject == subject][:n_shot]
        if len(shots) < n_shot:
            raise RtuneError(f"{name}: {n_shot} few-shot examples asked for, the dev split has {len(shots)}")
        chosen = unit_items[:limit]
        requests = [mc_request(item, shots, task.description(subject), session.style) for item in chosen]
        samples = _score_unit(session, name, task, chosen, requests, key)
        values = {metric: [sample[metric] for sample in samples] for metric in task.metrics}
        unit = UnitResult(name, values, len(unit_items), n_shot, task.version, samples)
        session.save_part(unit, key)
        units.append(unit)
    order = list(by_unit)
    return sorted(units, key=lambda u: order.index(u.name))
