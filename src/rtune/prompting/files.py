"""Prompt files a user names, in the placeholder syntax of the tool they come from, filled as that tool fills them.

rtune ships its own prompts; to reproduce another tool's protocol exactly, a user points rtune at
that tool's original prompt text (docs/fidelity.md says where each one lives). The Response Tuning
repository's prompts (URIAL, refinement, refusal judge) are Python `str.format` strings, `.strip()`ped
before use; just-eval's are `string.Template` strings (`${name}`), used as they are. A file is
checked when it is loaded (every placeholder the protocol fills, and nothing else), so a wrong file
fails before any model is called.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rtune.errors import RtuneError
from rtune.io import stable_hash

Syntax = Literal["format", "template"]  # str.format ({name}) | string.Template (${name})


@dataclass(frozen=True)
class PromptFile:
    name: str  # the file's name, for records
    text: str  # as used: stripped for `format` files, as written for `template` files
    syntax: Syntax

    @property
    def version(self) -> str:
        """What identifies the prompt in results and cache keys: the file name and a hash of the text."""
        return f"file:{self.name}@{stable_hash(self.text)[:12]}"

    def fill(self, **values: str) -> str:
        """The prompt with every placeholder filled, exactly as the original tool fills it."""
        if self.syntax == "format":
            return self.text.format(**values)
        return string.Template(self.text).substitute(**values)


def placeholders(text: str, syntax: Syntax) -> set[str]:
    """The names a prompt text fills; a malformed text (a lone brace, a bare `$`) is an error."""
    if syntax == "template":
        template = string.Template(text)
        if not template.is_valid():
            raise ValueError("a '$' that starts no ${name} placeholder (write '$$' for a literal '$')")
        return set(template.get_identifiers())
    names = set()
    for _, field, _, _ in string.Formatter().parse(text):
        if field is not None:
            if not field or not field.isidentifier():
                raise ValueError(f"placeholder {{{field}}} is not a name (write '{{{{' and '}}}}' for literal braces)")
            names.add(field)
    return names


def load_prompt_file(path: str | Path, syntax: Syntax, fields: tuple[str, ...], what: str) -> PromptFile:
    """Read and check a prompt file that must fill exactly `fields` (`what` names it in errors)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RtuneError(f"{what}: no such file: {path}")
    text = path.read_text(encoding="utf-8")
    text = text.strip() if syntax == "format" else text
    try:
        found = placeholders(text, syntax)
    except ValueError as exc:
        raise RtuneError(f"{path}: {what}: {exc}") from exc
    marker = "{%s}" if syntax == "format" else "${%s}"
    missing = [marker % name for name in fields if name not in found]
    if missing:
        raise RtuneError(f"{path}: {what} has no {', '.join(missing)} placeholder")
    unknown = sorted(marker % name for name in found - set(fields))
    if unknown:
        raise RtuneError(
            f"{path}: {what} fills only {', '.join(marker % name for name in fields)}; it also has {', '.join(unknown)}"
        )
    return PromptFile(path.name, text, syntax)
