"""In-context response learning (URIAL format): prompt files, rendering, stop strings, output cleanup.

Three modes as in the paper: `urial` (queries and answers), `urial_r` (the same answers without
their queries), `0shot` (no demonstrations). Our own prompt files ship in rtune/resources/urial and
are used as shipped. Any other file with an `{instruction}` slot (the paper's own prompt files, for
one) is read as the paper's scripts read theirs: `.strip()`ped, then filled with `str.format`, so
`{{` and `}}` stand for literal braces. Base models read these as raw text, no chat template.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rtune.errors import RtuneError
from rtune.prompting.files import load_prompt_file

URIAL_MODES = ("urial", "urial_r", "0shot")
URIAL_STOP = ("# Query:", "# Answer:", "# Instruction")
PLACEHOLDER = "instruction"


def load_template(mode_or_path: str) -> str:
    """A shipped mode's prompt, or the stripped text of a prompt file whose only placeholder is `{instruction}`."""
    if mode_or_path in URIAL_MODES:
        return resources.files("rtune.resources").joinpath("urial", f"{mode_or_path}.txt").read_text(encoding="utf-8")
    if not Path(mode_or_path).expanduser().is_file():
        raise RtuneError(
            f"URIAL prompt: '{mode_or_path}' is neither a mode ({', '.join(URIAL_MODES)}) nor a prompt file"
        )
    return load_prompt_file(mode_or_path, "format", (PLACEHOLDER,), "URIAL prompt file").text


def render(template: str, instruction: str) -> str:
    """The paper's `template.format(instruction=...)`: the instruction goes in as is, braces and all."""
    return template.format(instruction=instruction)


def clean_output(text: str) -> str:
    """The answer without its surrounding whitespace and the closing fence the model writes after it."""
    return text.strip().rstrip("`").strip()
