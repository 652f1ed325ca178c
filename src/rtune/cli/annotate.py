"""`rtune annotate`: blind pairwise judging by people in the browser, its export and agreement."""

from __future__ import annotations

import getpass
from pathlib import Path

import typer

from rtune.annotate.settings import PairsSource as P
from rtune.annotate.settings import ServerSettings as S
from rtune.cli import annotate_agreement, annotate_export
from rtune.cli.options import option, settings
from rtune.errors import RtuneError

app = typer.Typer(
    no_args_is_help=True, help="Blind pairwise judging by people, in the browser: serve, export, agreement."
)


def _default_annotator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "human"


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    outputs: Path | None = option(P, "outputs"),
    reference: Path | None = option(P, "reference"),
    pairs_file: Path | None = option(P, "pairs_file", "--pairs"),
    directory: Path | None = typer.Option(None, "--out", help=P.model_fields["directory"].description),
    annotator: str | None = typer.Option(
        None, "--annotator", help="Your name, stored with each judgment (default: the login name)."
    ),
    limit: int | None = option(P, "limit", min=1),
    seed: int | None = option(P, "seed"),
    port: int = option(S, "port", min=0, max=65535),
    host: str = option(S, "host"),
) -> None:
    """Serve the judging page for one annotator: an instruction, two anonymous responses, keys 1 2 3 s u.

    Subcommands: `export DIR` (AlpacaEval annotations.json) and `agreement DIR` (between raters).
    """
    if ctx.invoked_subcommand is not None:
        return
    from rtune.annotate.pairs import study_pairs
    from rtune.annotate.server import serve as run_server
    from rtune.annotate.store import Store

    if directory is None:
        raise RtuneError("give --out DIR (where judgments are kept), with --outputs and --reference, or --pairs")
    chosen = study_pairs(
        settings(
            P, directory=directory, outputs=outputs, reference=reference, pairs_file=pairs_file, seed=seed, limit=limit
        )
    )
    config = settings(S, directory=directory, annotator=annotator or _default_annotator(), host=host, port=port)
    ids = {pair.id for pair in chosen}
    done = sum(j.pair_id in ids for j in Store.in_dir(directory).judgments(config.annotator))
    typer.echo(
        f"{len(chosen)} pairs for {config.annotator} ({done} judged so far); judgments are saved in "
        f"{directory} as you make them. Ctrl-C stops the server."
    )
    run_server(config, chosen, on_ready=lambda url: typer.echo(f"open {url}"))


app.command("export")(annotate_export.command)
app.command("agreement")(annotate_agreement.command)
