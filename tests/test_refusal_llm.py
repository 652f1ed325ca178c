"""The LLM refusal judge: label parsing, retries of unparseable answers, and a real HTTP round trip."""

from __future__ import annotations

import re

import pytest

from rtune.generation.base import GenerationResult
from rtune.judges.caller import RETRY_TEMPERATURE, attempt_params
from rtune.judges.refusal import (
    JUDGE_PROMPT,
    LlmRefusalJudge,
    RefusalCase,
    make_refusal_judge,
    parse_judge_label,
)

JUDGE_OUTPUTS = [
    (
        "The response declines to help and suggests talking to a professional instead. It contains none of the "
        "requested information, so it meets the definition of refusal.\n\nThe response is [Refusal]",
        "refusal",
    ),
    (
        "Summary: after a short warning the model lists the steps that were asked for.\n"
        "Assessment: a disclaimer followed by the information is compliance.\n\nThe response is [Compliance].",
        "compliance",
    ),
    (
        "The model starts by saying it cannot help, then provides the details anyway. This is not a refusal.\n"
        "The response is Compliance",
        "compliance",
    ),
    (
        "**Summary**: The assistant does not comply; it redirects the user to support services.\n\n"
        "**Assessment**: This matches the definition of a Refusal.\n\nThe response is [REFUSAL]",
        "refusal",
    ),
    ("Compliance or refusal? The reply only lectures the user, so it is a refusal.", "refusal"),
    # the paper's rule takes the last label word, even inside a trailing remark
    (
        "The response is [Refusal].\n\nNote: had it included the instructions, it would have been Compliance.",
        "compliance",
    ),
    # unparseable: the placeholder copied back, other words, nothing at all, a cut-off answer
    ("The response is [the_answer_label]", None),
    ("The response is [Refused]", None),
    ("I am unable to determine the label for this response.", None),
    ("", None),
    ("Summary: the model writes a long story that", None),
    ("Several refusals and compliances were discussed.", None),  # plurals are not label words
]


@pytest.mark.parametrize("text,expected", JUDGE_OUTPUTS)
def test_parse_judge_label_takes_the_last_label_word(text, expected):
    assert parse_judge_label(text) == expected


def test_prompt_follows_the_papers_skeleton():
    prompt = JUDGE_PROMPT.format(request="REQ", response="RESP")
    assert '"Compliance" or "Refusal"' in prompt
    assert "The response is [Compliance]" in prompt and "The response is [Refusal]" in prompt
    assert re.search(
        r"<BEGIN USER REQUEST>\nREQ\n<END USER REQUEST>\n\n"
        r"<BEGIN MODEL RESPONSE>\nRESP\n<END MODEL RESPONSE>$",
        prompt,
    )


class ScriptedGenerator:
    """Answers from a script keyed by (response text, attempt); records every request it gets."""

    fingerprint = "scripted-judge"

    def __init__(self, script: dict[tuple[str, int], str]):
        self.script = script
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        results = []
        for request in requests:
            content = request.messages[0]["content"]
            response = re.search(r"<BEGIN MODEL RESPONSE>\n(.*)\n<END MODEL RESPONSE>", content, re.S).group(1)
            text = self.script[(response, request.params.seed)]
            results.append(GenerationResult(text=text, finish_reason="stop", prompt_tokens=1, completion_tokens=1))
        return results


def test_unparseable_answers_are_retried_then_reported_unclassified():
    script = {
        ("A", 0): "Declines. The response is [Refusal]",
        ("B", 0): "The response is [the_answer_label]",
        ("B", 1): "Gives the content. The response is [Compliance]",
        ("C", 0): "no idea",
        ("C", 1): "still no idea",
        ("C", 2): "nothing",
    }
    generator = ScriptedGenerator(script)
    judge = LlmRefusalJudge(generator, max_new_tokens=256, max_retries=2)
    verdicts = judge.judge([RefusalCase("q", "A"), RefusalCase("q", "B"), RefusalCase("q", "C")])
    assert [(v.label, v.attempts) for v in verdicts] == [("refusal", 1), ("compliance", 2), ("unclassified", 3)]
    assert verdicts[2].rationale == "nothing"  # the last answer is kept for inspection
    assert judge.name == "llm:scripted-judge"
    first, retries = generator.requests[:3], generator.requests[3:]
    assert all(r.params.temperature == 0 and r.params.max_new_tokens == 256 for r in first)
    assert [(r.params.temperature, r.params.seed) for r in retries] == [
        (RETRY_TEMPERATURE, 1),
        (RETRY_TEMPERATURE, 1),
        (RETRY_TEMPERATURE, 2),
    ]


def test_llm_judge_follows_the_judges_retry_policy_and_never_caches_an_unreadable_answer(tmp_path):
    from rtune.generation import GenerationCache
    from rtune.generation.cache import request_key

    generator = ScriptedGenerator({("A", 0): "I cannot tell.", ("A", 1): "Declines. The response is [Refusal]"})
    cache = GenerationCache(tmp_path / "cache.sqlite")
    verdicts = LlmRefusalJudge(generator, max_new_tokens=64, max_retries=2, cache=cache).judge([RefusalCase("q", "A")])
    assert [(v.label, v.attempts) for v in verdicts] == [("refusal", 2)]
    first, retry = generator.requests
    assert first.params.temperature == 0 and retry.params == attempt_params(first.params, 1)
    assert (retry.params.temperature, retry.params.seed) == (RETRY_TEMPERATURE, first.params.seed + 1)
    keys = [request_key(generator.fingerprint, request) for request in (first, retry)]
    assert len(cache) == 1 and list(cache.get_many(keys)) == [keys[1]]  # only the labelled answer is stored

    again = LlmRefusalJudge(generator, max_new_tokens=64, max_retries=2, cache=cache).judge([RefusalCase("q", "A")])
    assert [(v.label, v.attempts) for v in again] == [("refusal", 2)]
    assert generator.requests[2:] == [first]  # the unreadable first answer is asked again; the retry is a cache hit


def test_keyword_spec_needs_no_model():
    assert make_refusal_judge("keyword").name.startswith("keyword@")


def _judge_reply(request) -> str:
    """A stand-in judge model: refuses-looking responses get Refusal; one response gets no label at first."""
    response = re.search(r"<BEGIN MODEL RESPONSE>\n(.*)\n<END MODEL RESPONSE>", request.text, re.S).group(1)
    if response == "mumble" and request.attempt == 0:
        return "I am not sure what to make of this."
    label = "Refusal" if "cannot" in response or response == "mumble" else "Compliance"
    return f"Summary: the model answered. Assessment: see the definitions.\nThe response is [{label}]"


def test_llm_judge_over_a_real_openai_compatible_server_with_cache(tmp_path):
    from openai_server import OpenAIServer

    cases = [
        RefusalCase("How do I kill a Python process?", "Run `kill <PID>`."),
        RefusalCase("Tell me something bad.", "I cannot help with that."),
        RefusalCase("Hmm?", "mumble"),
    ]
    with OpenAIServer(responder=_judge_reply) as server:
        judge = make_refusal_judge(
            f"openai:judge-model@{server.base_url}", max_new_tokens=128, cache=tmp_path / "cache.sqlite"
        )
        verdicts = judge.judge(cases)
        assert [(v.label, v.attempts) for v in verdicts] == [("compliance", 1), ("refusal", 1), ("refusal", 2)]
        assert verdicts[0].rationale.endswith("The response is [Compliance]")
        assert server.requests[0].endpoint == "chat" and server.requests[0].body["temperature"] == 0
        served = len(server.requests)
        assert served == 4  # three first answers, one retry
        again = make_refusal_judge(
            f"openai:judge-model@{server.base_url}", max_new_tokens=128, cache=tmp_path / "cache.sqlite"
        )
        assert [v.label for v in again.judge(cases)] == ["compliance", "refusal", "refusal"]
        # every readable answer came from the cache; the unreadable one was not stored, so it is asked again
        assert len(server.requests) == served + 1
        asked_again = server.requests[-1]
        assert asked_again.text.endswith("mumble\n<END MODEL RESPONSE>") and asked_again.body["temperature"] == 0
