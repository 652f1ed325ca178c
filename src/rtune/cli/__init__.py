"""The `rtune` command: one typer app, one sub-command per pipeline stage.

Each stage's plumbing lives in its own module here (a `command` function, or an `app` for a
group); this file only wires them together and turns RtuneError into a one-line message.
"""

from __future__ import annotations

import importlib
import sys

import click
import typer
from rich.console import Console
from rich.markup import escape

from rtune.errors import RtuneError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Response Tuning and instruction tuning: build data, train, generate, judge, evaluate, report.")

# (group or None, command name, module, attribute): group None puts the command at the top level.
COMMANDS: list[tuple[str | None, str, str, str]] = [
    ("data", "build", "rtune.cli.data", "build"),
    ("data", "render", "rtune.cli.data", "render"),
    ("data", "refine", "rtune.cli.refine", "command"),
    ("data", "mix-safety", "rtune.cli.safety_mix", "command"),
    ("models", "prepare", "rtune.cli.models", "prepare"),
    ("models", "list", "rtune.cli.models", "list_models"),
    (None, "train", "rtune.cli.train", "command"),
    (None, "generate", "rtune.cli.generate", "command"),
    (None, "chat", "rtune.cli.chat", "command"),
    ("judge", "pairwise", "rtune.cli.judge_pairwise", "command"),
    ("judge", "aspects", "rtune.cli.judge_aspects", "command"),
    ("metrics", "winrate", "rtune.cli.metrics", "winrate"),
    ("metrics", "difficulty", "rtune.cli.metrics", "difficulty"),
    ("eval", "core", "rtune.cli.eval_core", "command"),
    ("eval", "safety", "rtune.cli.eval_safety", "command"),
    ("eval", "likelihood", "rtune.cli.eval_likelihood", "command"),
    (None, "run", "rtune.cli.run", "command"),
    (None, "report", "rtune.cli.report", "command"),
    (None, "demo", "rtune.cli.demo", "command"),
]

GROUP_HELP = {
    "data": "Build, inspect, refine and mix training records.",
    "models": "Prepare and list models.",
    "judge": "LLM judges: pairwise preferences and multi-aspect scores.",
    "metrics": "Metrics over judge annotations.",
    "eval": "Evaluations: core capabilities, safety, judge-free likelihood.",
}


def _wire() -> None:
    groups: dict[str, typer.Typer] = {}
    for group, name, module_name, attribute in COMMANDS:
        if importlib.util.find_spec(module_name) is None:
            continue  # stage not built yet
        function = getattr(importlib.import_module(module_name), attribute)
        if group is None:
            app.command(name)(function)
            continue
        if group not in groups:
            groups[group] = typer.Typer(no_args_is_help=True, help=GROUP_HELP[group])
            app.add_typer(groups[group], name=group)
        groups[group].command(name)(function)


_wire()


def main() -> None:
    """Entry point: user errors print one line and exit 2; nothing prints a traceback for them."""
    console = Console(stderr=True)
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int):
            sys.exit(code)
    except RtuneError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted; finished items are saved, rerun the same command to resume")
        sys.exit(130)
