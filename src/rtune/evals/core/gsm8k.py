"""GSM8K as lm-eval's `gsm8k_cot_llama`: eight fixed chain-of-thought exemplars, greedy decoding, exact match.

Prompt of one problem (doc_to_text; few-shot delimiter "\\n\\n"):

    Given the following problem, reason and give a final answer to the problem.
    Problem: {question}
    Your response should end with "The final answer is [answer]" where [answer] is the response to the problem.

Plain mode concatenates `text + delimiter + target + "\\n\\n"` for each exemplar, then the test problem's text;
the delimiter is "" today (task version 4.0) and was lm-eval's default " " in the paper's time (version 3.0,
lm-eval 0.4.4/0.4.5). The prompt's BOS follows the protocol (see `prompts`).
Chat mode sends the exemplars as alternating user/assistant turns and the problem as the last user
turn (lm-eval's `--apply_chat_template --fewshot_as_multiturn`). Two answers are extracted, as
lm-eval's filters: strict ("The final answer is N") and flexible (the last number in the reply);
both are compared with the reference after removing commas, "$", anything up to "#### " and a
trailing period, ignoring case.

The stop strings are lm-eval's, written for chat models. A base model prompted in plain mode
usually goes on to invent the next "Given the following problem…" block until the 256-token cap,
and strict extraction takes the *last* "The final answer is", as lm-eval does; chat mode (the
paper's setting) ends at the end-of-turn token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from rtune.errors import RtuneError
from rtune.evals.core.results import UnitResult
from rtune.evals.core.session import Session
from rtune.evals.core.tasks import load_gsm8k

INSTRUCTION = (
    "Given the following problem, reason and give a final answer to the problem.\nProblem: {question}\n"
    'Your response should end with "The final answer is [answer]" '
    "where [answer] is the response to the problem.\n"
)
FEWSHOT_DELIMITER = "\n\n"
N_SHOTS = 8
MAX_NEW_TOKENS = 256  # lm-eval's default max_gen_toks
STOP = ("<|eot_id|>", "<|start_header_id|>user<|end_header_id|>", "Q:", "</s>", "<|im_end|>")
STRICT = re.compile(r"The final answer is ((-?[$0-9.,]{2,})|(-?[0-9]+))")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORED = (r",", r"\$", r"(?s).*#### ", r"\.$")
INVALID = "[invalid]"


@dataclass(frozen=True)
class Exemplar:
    question: str
    target: str


@dataclass(frozen=True)
class GSMScore:
    strict: str
    flexible: str
    strict_correct: bool
    flexible_correct: bool


def load_exemplars() -> list[Exemplar]:
    text = resources.files("rtune.resources").joinpath("gsm8k_cot_exemplars.json").read_text(encoding="utf-8")
    return [Exemplar(**row) for row in json.loads(text)["exemplars"]]


def problem_text(question: str) -> str:
    return INSTRUCTION.format(question=question)


def plain_prompt(question: str, exemplars: list[Exemplar], target_delimiter: str = "") -> str:
    shots = "".join(problem_text(e.question) + target_delimiter + e.target + FEWSHOT_DELIMITER for e in exemplars)
    return shots + problem_text(question)


def chat_messages(question: str, exemplars: list[Exemplar]) -> tuple[dict, ...]:
    turns: list[dict] = []
    for e in exemplars:
        turns += [{"role": "user", "content": problem_text(e.question)}, {"role": "assistant", "content": e.target}]
    return (*turns, {"role": "user", "content": problem_text(question)})


def cut_at_stop(text: str, stops: tuple[str, ...] = STOP) -> str:
    """The reply up to the first stop string (backends may already have stopped there)."""
    cut = min((text.find(s) for s in stops if s in text), default=len(text))
    return text[:cut]


def extract(text: str, pattern: re.Pattern) -> str:
    """The last match of `pattern`, its first non-empty group, stripped; "[invalid]" when nothing matches.

    (lm-eval's regex filter.)
    """
    matches = pattern.findall(text)
    if not matches:
        return INVALID
    last = matches[-1]
    if isinstance(last, tuple):
        last = next((group for group in last if group), INVALID)
    return last.strip()


def normalise(answer: str) -> str:
    for pattern in IGNORED:
        answer = re.sub(pattern, "", answer)
    return answer.lower()


def score_reply(reply: str, target: str) -> GSMScore:
    reply = cut_at_stop(reply)
    strict, flexible = extract(reply, STRICT), extract(reply, FLEXIBLE)
    reference = normalise(target)
    return GSMScore(strict, flexible, normalise(strict) == reference, normalise(flexible) == reference)


def evaluate_gsm8k(session: Session) -> UnitResult:
    """Exact match (strict and flexible) over the problems, or the saved unit of an identical earlier run."""
    from rtune.generation import DecodingParams, GenerationRequest, generate_in_order

    n_shot = N_SHOTS if session.settings.num_fewshot is None else session.settings.num_fewshot
    if n_shot > N_SHOTS:
        raise RtuneError(f"gsm8k: at most {N_SHOTS} chain-of-thought exemplars exist; --num-fewshot {n_shot} asked")
    limit = session.settings.limit_of("gsm8k")
    key = session.unit_key("gsm8k", n_shot, limit)
    saved = session.load_part("gsm8k", key)
    if saved is not None:
        return saved
    items = load_gsm8k(session.data_dir)
    chosen = items[:limit]
    exemplars = load_exemplars()[:n_shot]
    params = DecodingParams(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, stop=STOP, seed=session.settings.seed)
    style, paper = session.style, session.settings.protocol == "paper"
    encoding = {"params": params, "add_special_tokens": style.add_special_tokens}
    requests = [
        GenerationRequest(messages=chat_messages(item.question, exemplars), **encoding)
        if style.chat
        else GenerationRequest(prompt=plain_prompt(item.question, exemplars, " " if paper else ""), **encoding)
        for item in chosen
    ]
    session.release_model()
    replies = generate_in_order(session.generator(), requests, session.progress, label="gsm8k")
    values: dict[str, list[float]] = {"exact_match,strict-match": [], "exact_match,flexible-extract": []}
    samples = []
    for doc_id, (item, request, reply) in enumerate(zip(chosen, requests, replies, strict=True)):
        score = score_reply(reply.text, item.target)
        values["exact_match,strict-match"].append(float(score.strict_correct))
        values["exact_match,flexible-extract"].append(float(score.flexible_correct))
        samples.append(
            {
                "task": "gsm8k",
                "doc_id": doc_id,
                "id": item.id,
                "target": item.target,
                "prompt": request.prompt,
                "messages": list(request.messages) if request.messages else None,
                "reply": reply.text,
                "finish_reason": reply.finish_reason,
                "strict": score.strict,
                "flexible": score.flexible,
                "exact_match,strict-match": float(score.strict_correct),
                "exact_match,flexible-extract": float(score.flexible_correct),
            }
        )
    unit = UnitResult("gsm8k", values, len(items), n_shot, "3.0" if paper else "4.0", samples)
    session.save_part(unit, key)
    return unit
