"""What the aspects judge reads: rtune's own prompts, or prompt files in just-eval's syntax.

just-eval fills its multi-score and safety templates with `string.Template(...).substitute(instruction=...,
candidate=...)` and sends the result as the user turn, after a system message of its own. A template
file named here is filled the same way and sent the same way (`system_prompt` gives the system
message), so the paper's JustEval protocol is one command away without rtune shipping its text. A
file replaces our prompt for its kind of item only: `template` for the five aspects, `safety_template`
for safety items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtune.io import stable_hash
from rtune.judges.prompts import PROMPT_VERSION, aspects_messages
from rtune.prompting.files import PromptFile, load_prompt_file

FIELDS = ("instruction", "candidate")  # just-eval's placeholders


@dataclass(frozen=True)
class AspectPrompts:
    regular: PromptFile | None = None  # None: rtune's own
    safety: PromptFile | None = None
    system_prompt: str | None = None

    def version(self, safety: bool) -> str:
        """The prompt an item of this kind is scored with (recorded per item, and part of its key)."""
        chosen = self.safety if safety else self.regular
        version = chosen.version if chosen is not None else PROMPT_VERSION
        return version + (f"+system@{stable_hash(self.system_prompt)[:12]}" if self.system_prompt is not None else "")

    @property
    def summary_version(self) -> str:
        """One version for a run: ours alone when nothing was replaced, else both kinds named."""
        regular, safety = self.version(False), self.version(True)
        return regular if regular == safety else f"aspects: {regular}; safety: {safety}"

    def messages(self, instruction: str, output: str, safety: bool) -> tuple[dict, ...]:
        chosen = self.safety if safety else self.regular
        if chosen is None:
            turns = aspects_messages(instruction, output, safety)
        else:
            turns = ({"role": "user", "content": chosen.fill(instruction=instruction, candidate=output)},)
        return (({"role": "system", "content": self.system_prompt},) if self.system_prompt is not None else ()) + turns


def load_aspect_prompts(
    template: Path | None, safety_template: Path | None, system_prompt: str | None
) -> AspectPrompts:
    """The prompts a run uses; a named file that lacks `${instruction}` or `${candidate}` fails here."""

    def load(path: Path | None, what: str) -> PromptFile | None:
        return None if path is None else load_prompt_file(path, "template", FIELDS, what)

    return AspectPrompts(load(template, "--template"), load(safety_template, "--safety-template"), system_prompt)
