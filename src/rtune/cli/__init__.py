"""The `rtune` command: one typer app, one sub-command per pipeline stage, and one place that maps
failures to exit codes.

Each command lives in its own module here (a `command` function, or a typer app for a group with
a callback of its own); this file wires them together. Exit codes: 0 done, 2 a usage or input
problem the user can fix (one line, no traceback), 130 interrupted.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import ClickException  # typer 0.29 bundles its own click

from rtune.errors import RtuneError


def _quiet_third_parties() -> None:
    """Silence what a user cannot act on: deprecation notices of our dependencies, their per-load progress bars,
    torch's note on the protocol of a pickle it refuses, and bitsandbytes' note about an optional CPU kernel package."""
    os.environ.setdefault(
        "HF_HUB_DISABLE_PROGRESS_BARS", "1"
    )  # "Loading weights", "Writing model shards" on every stage
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings(
            "ignore", category=category, module=r"(transformers|torch|peft|accelerate|bitsandbytes)\b"
        )
    warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a refused pickle gets one line of ours
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


_quiet_third_parties()

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Response Tuning and instruction tuning: build data, train, generate, judge, evaluate, report.",
)

# (group or None, command name, module, attribute): group None puts the command at the top level;
# a typer.Typer attribute is added whole, as a group with its own callback and sub-commands.
COMMANDS: list[tuple[str | None, str, str, str]] = [
    ("data", "build", "rtune.cli.data_build", "build"),
    ("data", "render", "rtune.cli.data_render", "render"),
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
    ("eval", "responses", "rtune.cli.eval_responses", "command"),
    (None, "run", "rtune.cli.run", "command"),
    (None, "report", "rtune.cli.report", "command"),
    (None, "demo", "rtune.cli.demo", "command"),
    (None, "annotate", "rtune.cli.annotate", "app"),
]

GROUP_HELP = {
    "data": "Build, inspect, refine and mix training records.",
    "models": "Prepare and list models.",
    "judge": "LLM judges: pairwise preferences and multi-aspect scores.",
    "metrics": "Metrics over judge annotations.",
    "eval": "Evaluations: core capabilities, safety, judge-free likelihood and response rate.",
}


def _wire() -> None:
    groups: dict[str, typer.Typer] = {}
    for group, name, module_name, attribute in COMMANDS:
        function = getattr(
            importlib.import_module(module_name), attribute
        )  # a missing module is a broken install: fail
        if group is None and isinstance(function, typer.Typer):
            app.add_typer(function, name=name)
        elif group is None:
            app.command(name)(function)
        else:
            if group not in groups:
                groups[group] = typer.Typer(no_args_is_help=True, help=GROUP_HELP[group])
                app.add_typer(groups[group], name=group)
            groups[group].command(name)(function)


_wire()


def main() -> None:
    """Entry point: user errors print one line and exit 2; usage errors print click's usage and exit 2;
    Ctrl-C exits 130."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        code = app(standalone_mode=False)
    except RtuneError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}")
        sys.exit(2)
    except ClickException as exc:  # usage mistakes: unknown command or option, a missing or invalid value
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except OSError as exc:  # a file that cannot be read or written: say which, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        console.print(f"[bold red]error:[/bold red] {escape(where + (exc.strerror or str(exc)))}")
        sys.exit(2)
    if code == 130:  # Ctrl-C; inside a command typer turns it into this returned code
        console.print("interrupted; finished items are saved, rerun the same command to resume")
    if isinstance(code, int) and code:
        sys.exit(code)
