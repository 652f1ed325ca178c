"""`rtune models prepare` and `rtune models list`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table


def prepare(spec: str = typer.Argument(..., help="Registered name, local folder, .gguf file or hub id.")) -> None:
    """Install/convert a model once; the last line printed is its ready local folder."""
    from rtune.models import load_tokenizer, prepare_model

    path = prepare_model(spec)
    load_tokenizer(path)  # fail here, not later, if the folder is unusable
    print(path)


def list_models() -> None:
    """Registered short names and whether they are prepared in the cache."""
    from rtune.models import describe_registry

    table = Table("name", "kind", "licence", "prepared", "description")
    for entry in describe_registry():
        table.add_row(
            entry["name"], entry["kind"], entry["license"], "yes" if entry["prepared"] else "no", entry["description"]
        )
    Console().print(table)
