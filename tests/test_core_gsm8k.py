"""GSM8K chain-of-thought prompts and lm-eval's strict/flexible answer extraction, on real GSM8K problems."""

from __future__ import annotations

import re

import pytest

from rtune.evals.core import gsm8k
from rtune.evals.core.tasks import load_gsm8k
from rtune.io import read_jsonl


@pytest.fixture(scope="module")
def problems(shared_data):
    return read_jsonl(shared_data / "gsm8k" / "test.jsonl")


def worked_solution(answer: str) -> str:
    """A GSM8K reference solution without its '#### N' line and calculator annotations."""
    return re.sub(r"<<[^>]*>>", "", answer.split("####")[0]).strip()


def test_references_and_real_solutions_score_as_lm_eval(problems, shared_data):
    items = load_gsm8k(shared_data)
    assert len(items) == 1319 and items[0].target == "18"
    picked = list(range(40)) + [146, 201, 489, 611]  # include '2,125', '114,200', '-10', '1,450,000'
    for index in picked:
        item, row = items[index], problems[index]
        reply = f"{worked_solution(row['answer'])} The final answer is {item.target}"
        score = gsm8k.score_reply(reply, item.target)
        assert score.strict == item.target and score.strict_correct and score.flexible_correct, index


def test_normalisation_commas_dollars_and_trailing_period(problems):
    # problem 146: target '2,125'
    assert gsm8k.score_reply("So she pays $2125. The final answer is $2125.", "2,125").strict_correct
    assert gsm8k.score_reply("The final answer is 2,125", "2,125").strict == "2,125"
    assert gsm8k.score_reply("The final answer is -10", "-10").strict_correct
    assert not gsm8k.score_reply("The final answer is 17", "18").strict_correct


def test_flexible_takes_the_last_number_when_the_phrase_is_missing(problems):
    raw_reference = problems[0]["answer"]  # ends '#### 18', no "The final answer is"
    score = gsm8k.score_reply(raw_reference, "18")
    assert score.strict == gsm8k.INVALID and not score.strict_correct
    assert score.flexible == "18" and score.flexible_correct
    assert gsm8k.score_reply("I am not sure.", "18").flexible == gsm8k.INVALID


def test_reply_is_cut_at_the_first_stop_string():
    reply = "16 - 3 - 4 = 9 eggs, 9 * 2 = 18. The final answer is 18\n\nQ: next question ... The final answer is 99"
    score = gsm8k.score_reply(reply, "18")
    assert score.strict == "18" and score.flexible == "18"


def test_exemplars_and_prompts(problems):
    exemplars = gsm8k.load_exemplars()
    assert len(exemplars) == 8 and exemplars[0].question.startswith("There are 15 trees in the grove.")
    assert [gsm8k.extract(e.target, gsm8k.STRICT) for e in exemplars] == ["6", "5", "39", "8", "9", "29", "33", "8"]
    question = problems[0]["question"]
    prompt = gsm8k.plain_prompt(question, exemplars)
    blocks = prompt.split("\n\n")
    assert (
        len(blocks) == 9 and blocks[0].endswith("The final answer is 6") and blocks[7].endswith("The final answer is 8")
    )
    assert prompt.endswith(
        f'Problem: {question}\nYour response should end with "The final answer is [answer]" '
        "where [answer] is the response to the problem.\n"
    )
    assert blocks[0].startswith(
        "Given the following problem, reason and give a final answer to the problem.\nProblem: There are 15 trees"
    )
    messages = gsm8k.chat_messages(question, exemplars)
    assert len(messages) == 17 and [m["role"] for m in messages[:4]] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == exemplars[0].target and messages[-1]["content"] == gsm8k.problem_text(question)
    assert gsm8k.plain_prompt(question, []) == gsm8k.problem_text(question)
