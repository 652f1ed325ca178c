"""`rtune chat`: the loop fed scripted lines (openai backend, streamed), and the real command driven through stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from openai_server import OpenAIServer
from rtune.generation import DecodingParams, GenerationRequest, from_spec
from rtune.generation.chat import ChatSession, run_chat


def test_history_system_reset_and_save_over_a_streaming_server(tmp_path):
    lines = iter(
        [
            "hello there",
            "/system Be brief.",
            "and again",
            f"/save {tmp_path / 'chat.json'}",
            "/reset",
            "fresh start",
            "/nope",
            "/quit",
            "never read",
        ]
    )
    written: list[str] = []
    with OpenAIServer() as server:
        session = ChatSession(from_spec(f"openai:m@{server.base_url}"), DecodingParams(max_new_tokens=20), model="m")
        run_chat(session, lambda: next(lines), written.append)
    output = "".join(written)
    assert "echo: hello there" in output and "echo: and again" in output and "echo: fresh start" in output
    assert "(unknown command /nope" in output
    assert all(r.body.get("stream") for r in server.requests)
    sent = [r.body["messages"] for r in server.requests]
    assert sent[0] == [{"role": "user", "content": "hello there"}]
    assert sent[1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "echo: hello there"},
        {"role": "user", "content": "and again"},
    ]
    assert sent[2] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "fresh start"}]
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert saved["model"] == "m" and saved["messages"] == sent[1] + [
        {"role": "assistant", "content": "echo: and again"}
    ]


def test_chat_command_through_stdin_with_the_hf_backend(tiny_model_dir, tmp_path):
    script = f"Give me three tips.\nAnd one more?\n/save {tmp_path / 'saved.json'}\n/quit\n"
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run(
        [sys.executable, "-m", "rtune", "chat", "--model", str(tiny_model_dir), "--max-new-tokens", "6"],
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "saved.json").read_text())
    roles = [m["role"] for m in saved["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    first_answer = saved["messages"][1]["content"]
    request = GenerationRequest(
        messages=({"role": "user", "content": "Give me three tips."},), params=DecodingParams(max_new_tokens=6)
    )
    expected = from_spec(str(tiny_model_dir)).generate([request])[0]  # the same default precision as the command
    assert first_answer == expected.text.strip() and first_answer in done.stdout


def test_ctrl_c_stops_the_answer_not_the_chat(tiny_model_dir):
    generator = from_spec(str(tiny_model_dir))
    session = ChatSession(generator, DecodingParams(max_new_tokens=200))
    lines = iter(["Give me three tips.", "Why is the sky blue?"])
    shown: list[str] = []
    pieces_of_first_answer = []

    def read_line():
        line = next(lines, None)
        if line is None:
            raise KeyboardInterrupt  # Ctrl-C at the prompt ends the chat
        return line

    def write(text: str) -> None:
        if len(session.history) == 0 and not text.startswith(("\n", "commands")):
            pieces_of_first_answer.append(text)
            if len(pieces_of_first_answer) == 2:
                raise KeyboardInterrupt  # Ctrl-C while the first answer streams
        shown.append(text)

    threads_before = threading.active_count()
    run_chat(session, read_line, write)
    assert any("(interrupted" in text for text in shown)
    assert [m["content"] for m in session.history if m["role"] == "user"] == ["Why is the sky blue?"]
    assert threading.active_count() == threads_before  # the interrupted answer's worker thread was stopped and joined
