"""In-context response learning (URIAL format): prompt files, rendering, stop strings, output cleanup.

Three modes as in the paper: `urial` (queries and answers), `urial_r` (the same answers without
their queries), `0shot` (no demonstrations). Our own prompt files ship in rtune/resources/urial;
any file with an `{instruction}` slot works too. Base models read these as raw text, no chat template.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rtune.errors import RtuneError

URIAL_MODES = ("urial", "urial_r", "0shot")
URIAL_STOP = ("# Query:", "# Answer:", "# Instruction")
PLACEHOLDER = "{instruction}"


def load_template(mode_or_path: str) -> str:
    """A shipped mode's prompt, or the text of a prompt file that holds `{instruction}`."""
    if mode_or_path in URIAL_MODES:
        return resources.files("rtune.resources").joinpath("urial", f"{mode_or_path}.txt").read_text(encoding="utf-8")
    path = Path(mode_or_path).expanduser()
    if not path.is_file():
        raise RtuneError(f"--urial: '{mode_or_path}' is neither a mode ({', '.join(URIAL_MODES)}) nor a prompt file")
    text = path.read_text(encoding="utf-8")
    if PLACEHOLDER not in text:
        raise RtuneError(f"{path}: URIAL prompt file has no {PLACEHOLDER} placeholder")
    return text


def render(template: str, instruction: str) -> str:
    """Plain replacement, not str.format: instructions and demonstrations may contain braces."""
    return template.replace(PLACEHOLDER, instruction)


def clean_output(text: str) -> str:
    """The answer without its surrounding whitespace and the closing fence the model writes after it."""
    return text.strip().rstrip("`").strip()
