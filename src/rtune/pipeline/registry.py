"""The stage kinds a pipeline can run: built-in ones, and plugins named by an experiment.

A kind is one module under `rtune/pipeline/kinds/` (or a plugin module) that registers itself with
`register(Kind(...))`: the name it has under `evals:` in an experiment file, the type of that
section, how it adds its stages to a plan (inputs hashed, dependencies), how one stage runs (a
library function returning a typed result), the result type, and its section of the report.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rtune.errors import RtuneError

BUILTIN = (
    "data",
    "refine",
    "train",
    "generate",
    "responses",
    "likelihood",
    "core",
    "safety",
    "pairwise",
    "aspects",
    "blind_pairs",
)


@dataclass(frozen=True)
class Kind:
    name: str
    result: type[BaseModel] | None = (
        None  # what a stage of this kind returns; stored as result.json, read back by the report
    )
    run: Callable[[Any], BaseModel] | None = (
        None  # Context -> result; None for a section whose stages are of another kind
    )
    spec: type[BaseModel] | None = (
        None  # its `evals:` section; None for the kinds other kinds add (data, train, generate)
    )
    plan: Callable[[Any, BaseModel], None] | None = None  # (Builder, spec) -> adds its stages
    section: Callable[[list], Any] | None = None  # [StageResult of this kind] -> report Section or None


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    KINDS[kind.name] = kind
    return kind


def _load_builtin() -> None:
    for name in BUILTIN:
        importlib.import_module(f"rtune.pipeline.kinds.{name}")


def kinds() -> dict[str, Kind]:
    """Every registered kind, the built-in ones first, in plan order."""
    _load_builtin()
    return KINDS


def get(name: str) -> Kind:
    found = kinds().get(name)
    if found is None:
        raise RtuneError(f"unknown stage kind '{name}'; known: {', '.join(KINDS)}")
    return found


def evaluations() -> dict[str, Kind]:
    """The kinds an experiment configures under `evals:`."""
    return {name: kind for name, kind in kinds().items() if kind.spec is not None}


def load_plugin(name: str, base_dir: Path) -> None:
    """Import a plugin module by dotted name or by a `.py` path (relative to the experiment file); it
    registers its kinds."""
    path = Path(name).expanduser()
    if path.suffix == ".py":
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise RtuneError(f"plugin {path}: no such file")
        module_name = f"rtune_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise RtuneError(f"plugin '{name}': cannot import it ({exc})") from exc
