"""Settings files: shipped configs found by name, YAML read with line numbers, pydantic errors as one line.

Every settings object is a pydantic model that lives with the code it configures; YAML is only its
serialised form. Unknown keys are an error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rtune.errors import RtuneError


def describe_validation_error(exc: ValidationError, whole: str = "config", name=lambda path: path) -> str:
    """Every problem pydantic found, as `field.path: message` (`whole` names an error of the whole object,
    `name` renames a field path, e.g. into the command-line option that set it)."""
    return "; ".join(
        f"{name('.'.join(str(p) for p in error['loc'])) if error['loc'] else whole}: {error['msg']}"
        for error in exc.errors()
    )


SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def find_config(name: str | Path, folder: str = "") -> Path:
    """A YAML file by path, else a config shipped with rtune by name (`paper_qlora`, `experiments/cpu_gemma270m`).

    The shipped recipes live inside the package so they work from a wheel as well as a checkout.
    """
    path = Path(name)
    if path.is_file():
        return path
    shipped = SHIPPED_CONFIGS / folder
    for candidate in (
        shipped / path,
        shipped / f"{path}.yaml",
        SHIPPED_CONFIGS / path,
        SHIPPED_CONFIGS / f"{path}.yaml",
    ):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in shipped.glob("*.yaml")))
    raise RtuneError(f"{path}: no such config file, and no shipped config of that name (shipped: {known})")


def read_yaml_mapping(path: str | Path, expected: str = "a mapping of settings") -> dict[str, Any]:
    """Parse a YAML file that must hold a mapping; malformed YAML is reported with its line."""
    path = Path(path)
    if not path.is_file():
        raise RtuneError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RtuneError(f"{where}: malformed YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(data, dict):
        raise RtuneError(f"{path}: expected {expected}, got {type(data).__name__}")
    return data
