"""URIAL prompts render exactly (golden text and hashes) and their outputs are cleaned as in the paper."""

from __future__ import annotations

import hashlib
import re

import pytest

from rtune.errors import RtuneError
from rtune.generation import DecodingParams
from rtune.prompting import parse_format, urial

INSTRUCTION = "Name three {curly} things."

HEADER = """# Instruction

The following is a record of conversations between a user and an AI assistant (you).
Each user message appears under "# Query:", and each of your replies appears under "# Answer:".
You are a knowledgeable, careful and trustworthy assistant.
Answer every query as usefully as you can: get straight to the point, \
organise longer answers with short paragraphs or numbered steps, and keep a warm, clear tone.
Be accurate. If you are unsure of something, say so instead of guessing.
Decline requests that could harm people or break the law, explain briefly why, \
and offer a safer alternative when you can.


"""
SLOT = "# Query:\n```\nName three {curly} things.\n```\n\n# Answer:\n```\n"

GOLDEN_SHA256 = {  # of render(load_template(mode), INSTRUCTION); update deliberately when a prompt file changes
    "urial": "1ad255fd6d54f1b48abde3803952411074b51f910de72913d5a09ca3079c9755",
    "urial_r": "1d787e70d021b27f690b5bc994c7ad9a97705971e455ac6cda24ae77dbfccb23",
    "0shot": "4d0ea4158ba77367af52afc63e3e6e6548e6a59755197b757cae39b96ea845be",
}

BLOCK = re.compile(r"# (Query|Answer):\n```\n(.*?)\n```\n\n", re.DOTALL)


def _rendered(mode: str) -> str:
    return urial.render(urial.load_template(mode), INSTRUCTION)


def _demonstrations(text: str) -> list[tuple[str, str]]:
    body = text[len(text.split("\n\n\n", 1)[0]) + 3 : -len(SLOT)]
    blocks = BLOCK.findall(body)
    assert "".join(f"# {kind}:\n```\n{content}\n```\n\n" for kind, content in blocks) == body  # nothing in between
    return blocks


def test_zero_shot_is_the_header_and_the_query_slot():
    assert _rendered("0shot") == HEADER + SLOT


@pytest.mark.parametrize("mode", urial.URIAL_MODES)
def test_renders_match_the_golden_files(mode):
    text = _rendered(mode)
    assert hashlib.sha256(text.encode()).hexdigest() == GOLDEN_SHA256[mode]
    assert text.startswith("# Instruction\n\n") and text.endswith("\n\n" + SLOT)
    assert text.count(INSTRUCTION) == 1 and "{instruction}" not in text


def test_urial_has_query_answer_pairs_and_urial_r_the_same_answers_alone():
    full = _demonstrations(_rendered("urial"))
    responses = _demonstrations(_rendered("urial_r"))
    assert [kind for kind, _ in full] == ["Query", "Answer"] * 3
    assert [kind for kind, _ in responses] == ["Answer"] * 3
    assert [content for kind, content in full if kind == "Answer"] == [content for _, content in responses]
    assert any(content.startswith("I'm sorry, but I can't help") for _, content in responses)  # one refusal
    assert _rendered("urial").startswith(HEADER)
    assert "collection of replies" in _rendered("urial_r").split("\n\n\n")[0]


def test_any_prompt_file_with_the_placeholder_works(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Q: {instruction}\nA:", encoding="utf-8")
    assert urial.render(urial.load_template(str(path)), "why {x}?") == "Q: why {x}?\nA:"
    (tmp_path / "bad.txt").write_text("no slot here", encoding="utf-8")
    with pytest.raises(RtuneError, match="no \\{instruction\\} placeholder"):
        urial.load_template(str(tmp_path / "bad.txt"))
    with pytest.raises(RtuneError, match="neither a mode"):
        urial.load_template("urial_x")


def test_a_named_prompt_file_is_stripped_and_filled_with_str_format(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("\n  # Query:\n{instruction}\nKeep {{this}} as braces.\n# Answer:\n\n", encoding="utf-8")
    template = urial.load_template(str(path))
    assert template == "# Query:\n{instruction}\nKeep {{this}} as braces.\n# Answer:"  # .strip(), as the paper does
    assert urial.render(template, "why {x}?") == "# Query:\nwhy {x}?\nKeep {this} as braces.\n# Answer:"
    path.write_text("{instruction} and {context}", encoding="utf-8")
    with pytest.raises(RtuneError, match=r"also has \{context\}"):
        urial.load_template(str(path))
    path.write_text("{instruction} and a lone {", encoding="utf-8")
    with pytest.raises(RtuneError, match="Single '{'"):
        urial.load_template(str(path))


PAPER_FILES = ["urial1kv4-4shot.txt", "urial1kv4_r-4shot.txt", "urial-0shot.txt"]


@pytest.mark.parametrize("name", PAPER_FILES)
def test_the_papers_prompt_files_give_the_prompt_its_script_gives(shared_data, name):
    path = shared_data / "urial" / "response_tuning_prompts" / name
    # eval/just_eval/run_inference.py: open(args.prompt).read().strip(), then prompt.format(instruction=instruction)
    expected = path.read_text(encoding="utf-8").strip().format(instruction=INSTRUCTION)
    request = parse_format(str(path)).request(INSTRUCTION)
    assert request.prompt == expected and request.messages is None
    assert request.params.stop == ("# Query:", "# Answer:", "# Instruction")  # the paper's --stop
    assert expected.startswith("# Query:") == (name == "urial-0shot.txt")  # the paper's 0-shot has no header


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("  Paris is the capital.\n```\n\n", "Paris is the capital."),
        ("Use `print`.\n```", "Use `print`."),
        ("\nNo fence at all  ", "No fence at all"),
        (
            "Code:\n```python\nx = 1\n```\n```\n",
            "Code:\n```python\nx = 1\n```",
        ),  # only the answer's own closing fence goes
    ],
)
def test_outputs_are_stripped_of_whitespace_and_trailing_backticks(raw, clean):
    assert urial.clean_output(raw) == clean


def test_urial_requests_are_raw_prompts_that_stop_at_the_next_block():
    request = parse_format("urial_r").request(INSTRUCTION, DecodingParams(max_new_tokens=64, stop=("extra",)))
    assert request.messages is None and request.prompt == _rendered("urial_r")
    assert request.params.stop == ("extra", "# Query:", "# Answer:", "# Instruction")
    assert request.params.max_new_tokens == 64
