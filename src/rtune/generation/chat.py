"""The interactive chat loop behind `rtune chat`, kept apart from the terminal so tests can feed it lines.

History is a list of chat messages rendered by the backend (the model's own template; Tulu for
our tuned models), so a multi-turn conversation reads exactly as the model was trained to see it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from rtune.errors import RtuneError
from rtune.generation.base import DecodingParams, GenerationRequest, TextStreamer
from rtune.io import atomic_write_json, check_output

HELP = (
    "commands: /reset (forget the conversation), /system TEXT (set or, empty, clear the system prompt), "
    "/save FILE, /quit"
)


@dataclass
class ChatSession:
    generator: object
    params: DecodingParams
    model: str = ""
    system: str | None = None
    history: list[dict] = field(default_factory=list)

    def messages(self) -> tuple[dict, ...]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return tuple(head + self.history)

    def reply(self, text: str) -> Iterator[str]:
        """Stream the answer to one user turn; the turn joins the history only once the answer is complete."""
        request = GenerationRequest(messages=self.messages() + ({"role": "user", "content": text},), params=self.params)
        if isinstance(self.generator, TextStreamer):
            pieces = []
            for piece in self.generator.stream_text(request):
                pieces.append(piece)
                yield piece
            answer = "".join(pieces)
        else:
            answer = self.generator.generate([request])[0].text
            yield answer
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer.strip()}]

    def save(self, path: str | Path) -> None:
        """Write the conversation, through the output guard every command uses (no folder, link or unwritable place)."""
        atomic_write_json(check_output(path), {"model": self.model, "messages": list(self.messages())})


def run_chat(session: ChatSession, read_line: Callable[[], str | None], write: Callable[[str], None]) -> None:
    """Read user lines until /quit, end of input or Ctrl-C at the prompt; answer each with streamed text.

    Ctrl-C while an answer streams stops that answer (it is not kept in the history) and the chat goes on.
    """
    write(f"{HELP}\n")
    while True:
        write("\n> ")
        try:
            line = read_line()
        except KeyboardInterrupt:
            line = None
        if line is None:
            write("\n")
            return
        line = line.strip()
        if not line:
            continue
        command, _, argument = line.partition(" ")
        if command in ("/quit", "/exit"):
            return
        if command == "/reset":
            session.history.clear()
            write("(conversation cleared)\n")
        elif command == "/system":
            session.system = argument.strip() or None
            write(f"(system prompt {'set' if session.system else 'cleared'})\n")
        elif command == "/save":
            if not argument.strip():
                write("(usage: /save FILE)\n")
                continue
            try:
                session.save(Path(argument.strip()).expanduser())
            except (RtuneError, OSError) as exc:  # a bad path costs one line, not the conversation
                write(f"(not saved: {exc})\n")
                continue
            write(f"(saved {len(session.history) // 2} turns to {argument.strip()})\n")
        elif command.startswith("/") and " " not in command and command[1:].isalpha():
            write(f"(unknown command {command}; {HELP})\n")
        else:
            try:
                with closing(session.reply(line)) as pieces:
                    for piece in pieces:
                        write(piece)
                write("\n")
            except KeyboardInterrupt:
                write("\n(interrupted; that answer is not kept in the history)\n")
