"""CLI options read from the settings models, so a default or a help text is written once (in the model)."""

from __future__ import annotations

from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from rtune.config import describe_validation_error
from rtune.errors import RtuneError

M = TypeVar("M", bound=BaseModel)


def option(model: type[BaseModel], name: str, *flags: str, **kwargs: Any) -> Any:
    """A typer option for `model.<name>`: its default and description come from the field."""
    field = model.model_fields[name]
    default = ... if field.is_required() else field.get_default(call_default_factory=True)
    return typer.Option(default, *(flags or (f"--{name.replace('_', '-')}",)), help=field.description, **kwargs)


def settings(model: type[M], /, **values: Any) -> M:
    """`model(**values)`; a validation error becomes one line naming the options (`--max-new-tokens: …`)."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise RtuneError(
            describe_validation_error(exc, "options", lambda path: "--" + path.replace("_", "-"))
        ) from None
