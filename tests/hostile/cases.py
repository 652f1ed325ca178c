"""The hostile-input table: what a new user or an adversary types, and the one line rtune must answer.

Each case names the row of issue 16 it proves (`row`; "held" for inputs that were already handled and must
stay so), the command (`{d}` is the corpus folder, `{model}` the tiny model, `{url}` the fault server), the
exit code, and a pattern the error line must match. `test_table.py` runs them all through the real entry
point and adds the checks every case shares (no traceback, one error line, nothing changed outside the run
folder, nothing unusable cached, no model loaded for a refused command).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openai_server import Fault, Reply, echo
from rtune.annotate.pairs import adopt_pairs, pairs_from_outputs


@dataclass(frozen=True)
class Server:
    responder: Callable = echo
    faults: Callable = lambda request: None


@dataclass(frozen=True)
class Case:
    id: str
    row: str
    args: str
    message: str  # regex searched in the error line (or, for exit 0, in all of stderr)
    code: int = 2
    notice: str | None = None  # regex a `waiting:` line on stderr must match (a wait the user is told about)
    seconds: float | None = None  # the command must be over within this many seconds
    server: Server | None = None
    setup: Callable[[Path, Path], None] | None = None  # (corpus folder, tiny model folder)
    check: Callable[[Path, object], None] | None = None  # (corpus folder, the server or None)


def _link(name: str, run: str = "out/run") -> Callable[[Path, Path], None]:
    def plant(d: Path, model: Path) -> None:
        (d / run).mkdir(parents=True)
        os.symlink(d / "precious.jsonl", d / run / name)

    return plant


class _Payload:
    """A pickle that runs a command when unpickled: what a hostile `pytorch_model.bin` holds."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _annotate_folder(link: str | None = None) -> Callable[[Path, Path], None]:
    """An annotate folder in the run folder (its pairs.json), with a link planted in it."""

    def plant(d: Path, model: Path) -> None:
        folder = d / "out/ann"
        adopt_pairs(folder, pairs_from_outputs(d / "outputs.json", d / "reference.json"))
        if link:
            os.symlink(d / "precious.jsonl", folder / link)

    return plant


def _custom_code_model(d: Path, model: Path) -> None:
    folder = d / "custom_code_model"
    folder.mkdir()
    code = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps({"model_type": "evil", "architectures": ["Evil"], "auto_map": code}))
    for name in ("configuration_evil.py", "modeling_evil.py"):
        (folder / name).write_text(f"import pathlib\npathlib.Path({str(d / 'RAN')!r}).write_text('custom code ran')\n")


def _pickled_model(d: Path, model: Path) -> None:
    folder = d / "pickled_model"
    shutil.copytree(model, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(d / "RAN")))


def _no_requests(d: Path, server) -> None:
    assert server.requests == [], "the server was asked although the command was refused"


def _nothing_judged(d: Path, server) -> None:
    assert not (d / "out/run/annotations.json").exists() and not (d / "out/run/summary.json").exists()
    with sqlite3.connect(d / "out/run/judge_cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0


def _no_secret_anywhere(d: Path, server) -> None:
    assert server.requests, "the requests did not reach the server named in the spec"
    for path in (d / "out").rglob("*"):
        assert not path.is_file() or b"SECRET" not in path.read_bytes(), f"{path} holds the password"


def _no_pairs_written(d: Path, server) -> None:
    assert not (d / "out/ann/pairs.json").exists(), "the folder was started although it was refused"


def _outputs_written(d: Path, server) -> None:
    assert [row["output"] for row in json.loads((d / "out/o.json").read_text())] == [
        f"echo: {t}" for t in ("Say hi.", "Name a colour.")
    ]


GEN = "generate --model {model} --input {d}/instructions.json --out {d}/out/o.json --max-new-tokens 4"
SERVED = "generate --model openai:m@{url} --input {d}/instructions.json --out {d}/out/o.json --prompt plain"
BUILD = "data build {d}/%s --out {d}/out/r.jsonl"
PAIRWISE = (
    "judge pairwise --outputs {d}/outputs.json --reference {d}/reference.json --judge openai:j@{url} --out {d}/out/run"
)
ASPECTS = "judge aspects --outputs {d}/outputs.json --judge openai:j@{url} --out {d}/out/run"
TRAIN = "train --method rt --model {model} --data {d}/records.jsonl --out {d}/out/run --max-steps 1"
HANG = Server(faults=lambda request: Fault(delay=5))
STALL = Server(faults=lambda request: Fault(delay=30))  # far longer than any test waits: only --timeout ends it
ANNOTATE = "annotate --outputs {d}/outputs.json --reference {d}/reference.json --out {d}/%s"
UNREADABLE = Server(responder=lambda request: Reply("I cannot decide."))

CASES = [
    # 1: usage mistakes are click's usage message and exit 2, not a traceback
    Case("no-command", "1", "", r"Usage: .*COMMAND"),
    Case("unknown-command", "1", "bogus", r"No such command 'bogus'"),
    Case("unknown-option", "1", "generate --bogus", r"No such option: --bogus"),
    Case(
        "missing-option",
        "1",
        "generate --input {d}/instructions.json --out {d}/out/o.json",
        r"Missing option '--model'",
    ),
    Case("limit-zero", "1", GEN + " --limit 0", r"Invalid value for '--limit'"),
    Case("negative-steps", "1", "train --out {d}/out/run --max-steps -5", r"Invalid value for '--max-steps'"),
    Case(
        "bad-choice",
        "1",
        "judge pairwise --outputs a --reference b --judge j --out o --mode guess",
        r"--mode: Input should be 'weighted' or 'parsed'",
    ),
    # 2: an output that is an input is refused before any work
    Case(
        "build-over-input",
        "2",
        "data build {d}/records.jsonl --out {d}/records.jsonl",
        r"records.jsonl: is also the input",
    ),
    Case(
        "generate-over-input",
        "2",
        "generate --model {model} --input {d}/instructions.json --out {d}/instructions.json",
        r"instructions.json: is also the input",
    ),
    Case(
        "mix-over-input",
        "2",
        "data mix-safety {d}/records.jsonl --out {d}/records.jsonl --safety {d}/safety.jsonl --n 1",
        r"records.jsonl: is also the input",
    ),
    Case(
        "refine-over-input",
        "2",
        "data refine {d}/records.jsonl --refiner openai:m@{url} --out {d}/records.jsonl",
        r"records.jsonl: is also the input",
        server=Server(),
        check=_no_requests,
    ),
    Case(
        "responses-over-input",
        "2",
        "eval responses {d}/outputs.json --out {d}/outputs.json",
        r"outputs.json: is also the input",
    ),
    Case(
        "winrate-over-input",
        "2",
        "metrics winrate {d}/annotations.json --out {d}/annotations.json",
        r"annotations.json: is also the input",
    ),
    Case(
        "export-over-its-pairs",
        "2",
        "annotate export {d}/out/ann --out {d}/out/ann/pairs.json",
        r"pairs.json: is also the input",
        setup=_annotate_folder(),
    ),
    # 3: a prompt longer than the model reads is refused, naming the item, before the model loads
    Case(
        "huge-prompt",
        "3",
        "generate --model {model} --input {d}/big.json --out {d}/out/o.json",
        r"big.json: item 2 \(id big\): the prompt \(5,000,0\d\d characters\) is longer than the 1,024 tokens",
    ),
    # 4: a hanging or failing server: adjustable, announced waits, then one line
    Case(
        "server-hangs",
        "4",
        SERVED + " --timeout 0.3 --max-retries 1",
        r"no answer within 0.3 s \(2 tries\)",
        notice=r"no answer within 0.3 s; try 2 of 2 in",
        server=HANG,
    ),
    Case(
        "pairwise-judge-hangs",
        "4",
        PAIRWISE + " --timeout 0.5 --max-retries 0",
        r"127.0.0.1:\d+/v1: no answer within 0.5 s \(1 tries\); is the server up\? \(--timeout, --max-retries\)",
        seconds=10,
        server=STALL,
    ),
    Case(
        "aspects-judge-hangs",
        "4",
        ASPECTS + " --timeout 0.5 --max-retries 1",
        r"no answer within 0.5 s \(2 tries\)",
        notice=r"no answer within 0.5 s; try 2 of 2 in .* \(--timeout, --max-retries\)",
        seconds=10,
        server=STALL,
    ),
    Case(
        "refiner-hangs",
        "4",
        "data refine {d}/records.jsonl --refiner openai:m@{url} --out {d}/out/r.jsonl --timeout 0.5 --max-retries 0",
        r"no answer within 0.5 s \(1 tries\)",
        seconds=10,
        server=STALL,
    ),
    Case(
        "server-503-storm",
        "4",
        SERVED + " --max-retries 2",
        r"answered HTTP 503",
        notice=r"HTTP 503; try 3 of 3 in 0.0 s",
        server=Server(faults=lambda request: Fault(status=503, retry_after_ms=10)),
    ),
    Case(
        "server-429-then-fine",
        "4",
        SERVED,
        r"wrote 2 outputs",
        code=0,
        check=_outputs_written,
        notice=r"HTTP 429; try 3 of 4 in 0.0 s \(--timeout, --max-retries\)",
        server=Server(faults=lambda request: Fault(status=429, retry_after_ms=10) if request.attempt < 2 else None),
    ),
    Case(
        "server-refuses-connection",
        "4",
        SERVED.replace("{url}", "http://127.0.0.1:9/v1") + " --max-retries 0",
        r"http://127.0.0.1:9/v1: request failed after 1 tries",
    ),
    # 5: a 200 that is not an answer: one line naming the server, nothing cached
    Case(
        "body-not-json",
        "5",
        SERVED,
        r"127.0.0.1:\d+/v1: model 'm' answered HTTP 200 with a body that is not JSON",
        server=Server(faults=lambda request: Fault(body="<html>502 Bad Gateway</html>")),
    ),
    Case(
        "body-cut-short",
        "5",
        SERVED,
        r"answered HTTP 200 with a body that is not JSON",
        server=Server(faults=lambda request: Fault(body='{"id": "x", "choices": [{"index": 0, "te')),
    ),
    Case(
        "no-choices",
        "5",
        SERVED,
        r"answered HTTP 200 with no choices",
        server=Server(faults=lambda request: Fault(body='{"id": "x", "choices": []}')),
    ),
    Case(
        "choice-without-text",
        "5",
        SERVED,
        r"answered HTTP 200 with a choice without text",
        server=Server(faults=lambda request: Fault(body='{"id": "x", "choices": [{"index": 0, "text": 7}]}')),
    ),
    Case(
        "judge-body-not-json",
        "5",
        ASPECTS,
        r"answered HTTP 200 with a body that is not JSON",
        server=Server(faults=lambda request: Fault(body="Service Unavailable")),
    ),
    Case(
        "judge-without-logprobs",
        "5",
        PAIRWISE,
        r"the judge returned no log-probabilities",
        server=Server(responder=lambda request: Reply("A", logprobs=False)),
    ),
    # 6: null, numbers and lone surrogates where text belongs: FILE:LINE, as for any bad row
    Case("null-prompt", "6", BUILD % "null.jsonl", r"null.jsonl:1: 'prompt' must be text, found null"),
    Case(
        "number-completion", "6", BUILD % "number.jsonl", r"number.jsonl:1: 'completion' must be text, found a number"
    ),
    Case("lone-surrogate", "6", BUILD % "surrogate.jsonl", r"surrogate.jsonl:1: \\ud800 is half of a UTF-16 surrogate"),
    Case(
        "null-instruction",
        "6",
        GEN.replace("instructions.json", "null_instruction.jsonl"),
        r"null_instruction.jsonl:2: expected a non-empty 'instruction'",
    ),
    Case(
        "surrogate-instruction",
        "6",
        GEN.replace("instructions.json", "surrogate_instruction.jsonl"),
        r"surrogate_instruction.jsonl:1: \\udc00 is half",
    ),
    Case(
        "number-output",
        "6",
        PAIRWISE.replace("outputs.json", "number_output.json"),
        r"number_output.json: row 1: expected a string 'output'",
        server=Server(),
        check=_no_requests,
    ),
    Case(
        "null-completion-train",
        "6",
        TRAIN.replace("records.jsonl", "records_null.jsonl"),
        r"records_null.jsonl:1: field 'completion' must be text, found null",
    ),
    Case(
        "number-render",
        "6",
        "data render {d}/number.jsonl --method it --model {model}",
        r"number.jsonl: record 1: record has no field 'id'",
    ),
    # 7: a symbolic link inside a run folder is never written through
    Case(
        "pairwise-log-link",
        "7",
        PAIRWISE,
        r"annotations.jsonl: is a symbolic link",
        server=Server(),
        setup=_link("annotations.jsonl"),
        check=_no_requests,
    ),
    Case(
        "aspects-log-link",
        "7",
        ASPECTS,
        r"scores.jsonl: is a symbolic link",
        server=Server(),
        setup=_link("scores.jsonl"),
        check=_no_requests,
    ),
    Case("train-folder-link", "7", TRAIN, r"trainer_state.json: is a symbolic link", setup=_link("trainer_state.json")),
    Case(
        "out-is-a-link",
        "7",
        SERVED.replace("out/o.json", "out/run/o.json"),
        r"o.json: is a symbolic link; rtune never writes over links",
        server=Server(),
        setup=_link("o.json"),
        check=_no_requests,
    ),
    Case(
        "annotate-store-link",
        "7",
        ANNOTATE % "out/ann",
        r"judgments.sqlite: is a symbolic link",
        setup=_link("judgments.sqlite", "out/ann"),
        check=_no_pairs_written,
    ),
    Case(
        "export-to-a-link",
        "7",
        "annotate export {d}/out/ann",
        r"ann/annotations.json: is a symbolic link",
        setup=_annotate_folder(link="annotations.json"),
    ),
    Case(
        "cache-link",
        "7",
        SERVED + " --cache {d}/out/run/c.sqlite",
        r"c.sqlite: is a symbolic link",
        server=Server(),
        setup=_link("c.sqlite"),
        check=_no_requests,
    ),
    # 8: credentials in a server URL: the request goes there, the password is never written
    Case(
        "credentials-in-url",
        "8",
        SERVED.replace("{url}", "{credentials_url}"),
        r"wrote 2 outputs",
        code=0,
        server=Server(),
        check=_no_secret_anywhere,
    ),
    Case(
        "judge-credentials-in-url",
        "8",
        PAIRWISE.replace("{url}", "{credentials_url}") + " --mode parsed",
        r"wrote .*annotations.json",
        code=0,
        server=Server(responder=lambda request: Reply("A")),
        check=_no_secret_anywhere,
    ),
    Case(
        "url-without-scheme",
        "8",
        "generate --model openai:m@127.0.0.1:8000/v1 --input {d}/instructions.json --out {d}/out/o.json",
        r"the server address needs http:// or https://",
    ),
    # 9: outputs that cannot be written are refused up front
    Case(
        "out-under-a-file",
        "9",
        SERVED.replace("out/o.json", "afile/o.json"),
        r"afile is a file, not a folder",
        server=Server(),
        check=_no_requests,
    ),
    Case(
        "out-is-a-folder",
        "9",
        SERVED.replace("out/o.json", "out"),
        r"out: is a folder; expected a file name",
        server=Server(),
        check=_no_requests,
    ),
    Case(
        "out-in-proc",
        "9",
        SERVED.replace("{d}/out/o.json", "/proc/rtune/o.json"),
        r"/proc/rtune/o.json: cannot write",
        server=Server(),
        check=_no_requests,
    ),
    Case("build-out-in-proc", "9", "data build {d}/records.jsonl --out /proc/r.jsonl", r"/proc/r.jsonl: cannot write"),
    Case("train-out-is-a-file", "9", TRAIN.replace("out/run", "afile"), r"afile: exists and is not a folder"),
    Case(
        "judge-out-is-a-file",
        "9",
        PAIRWISE.replace("out/run", "afile"),
        r"afile: exists and is not a folder",
        server=Server(),
        check=_no_requests,
    ),
    Case(
        "aspects-out-under-a-file",
        "9",
        ASPECTS.replace("out/run", "afile/run"),
        r"afile is a file, not a folder",
        server=Server(),
        check=_no_requests,
    ),
    Case(
        "safety-out-is-a-file",
        "9",
        "eval safety --outputs {d}/outputs.json --out {d}/afile",
        r"afile: exists and is not a folder",
    ),
    Case(
        "core-out-is-a-folder",
        "9",
        "eval core --model {model} --tasks arc_easy --out {d}/out",
        r"out: is a folder; expected a file name",
    ),
    Case(
        "difficulty-out-is-a-folder",
        "9",
        "metrics difficulty {d}/annotations.json --out {d}/out",
        r"out: is a folder; expected a file name",
    ),
    Case(
        "export-out-under-a-file",
        "9",
        "annotate export {d}/out --out {d}/afile/a.json",
        r"afile is a file, not a folder",
    ),
    Case("annotate-out-is-a-file", "9", ANNOTATE % "afile", r"afile: exists and is not a folder"),
    Case("annotate-out-under-a-file", "9", ANNOTATE % "afile/ann", r"afile is a file, not a folder"),
    Case(
        "likelihood-out-is-a-folder",
        "9",
        "eval likelihood --model {model} --records {d}/records.jsonl --out {d}/out",
        r"out: is a folder; expected a file name",
    ),
    # 12: a judge that never answers readably: an error, never n=0 and NaN
    Case(
        "judge-never-readable",
        "12",
        PAIRWISE + " --mode parsed",
        r"the judge gave no readable answer for any of the 2 items",
        server=UNREADABLE,
        check=_nothing_judged,
    ),
    Case(
        "aspects-never-readable",
        "12",
        ASPECTS,
        r"the judge gave no readable answer for any of the 2 items",
        server=UNREADABLE,
        check=_nothing_judged,
    ),
    Case(
        "winrate-all-null",
        "12",
        "metrics winrate {d}/annotations_null.json",
        r"annotations_null.json: no row has a preference",
    ),
    # 13: empty inputs and recipes that only look valid
    Case("build-empty-file", "13", BUILD % "empty.jsonl", r"empty.jsonl: no rows"),
    Case(
        "mix-empty-target",
        "13",
        "data mix-safety {d}/empty.jsonl --out {d}/out/m.jsonl --safety {d}/safety.jsonl",
        r"empty.jsonl: no records \(the file is empty\)",
    ),
    Case(
        "generate-empty-input", "13", GEN.replace("instructions.json", "empty.jsonl"), r"empty.jsonl: no instructions"
    ),
    Case("recipe-bad-scheduler", "13", TRAIN + " --config {d}/nonsense.yaml", r"unknown lr_scheduler 'nonsense'"),
    Case(
        "recipe-bad-optimizer", "13", TRAIN + " --config {d}/bad_optimizer.yaml", r"unknown optimizer 'adamw_nonsense'"
    ),
    Case("recipe-unknown-key", "13", TRAIN + " --config {d}/unknown.yaml", r"unknown.yaml: bogus: Extra inputs"),
    # held: what rtune already handled, kept that way (an untrusted model folder runs no code of its own)
    Case(
        "custom-code-model",
        "held",
        GEN.replace("{model}", "{d}/custom_code_model"),
        r"could not load model '.*custom_code_model' \(ValueError: .* contains custom code",
        setup=_custom_code_model,
    ),
    Case(
        "pickled-weights",
        "held",
        GEN.replace("{model}", "{d}/pickled_model"),
        r"its weights are a pickle holding more than tensors, which rtune does not unpickle",
        setup=_pickled_model,
    ),
    Case("cut-mid-line", "held", BUILD % "cut.jsonl", r"cut.jsonl:2: malformed JSON"),
    Case("binary-file", "held", BUILD % "binary.jsonl", r"binary.jsonl:2: not UTF-8 text"),
    Case("utf16-file", "held", BUILD % "utf16.jsonl", r"utf16.jsonl:1: not UTF-8 text \(it looks like UTF-16"),
    Case("bad-utf8-line", "held", BUILD % "latin1.jsonl", r"latin1.jsonl:2: not UTF-8 text"),
    Case("array-in-jsonl", "held", BUILD % "array.jsonl", r"array.jsonl:2: expected a JSON object, got list"),
    Case(
        "binary-instructions", "held", GEN.replace("instructions.json", "binary.json"), r"binary.json:1: not UTF-8 text"
    ),
    Case("missing-input", "held", GEN.replace("instructions.json", "nope.json"), r"nope.json: no such file"),
    Case(
        "reference-cut-mid-line",
        "held",
        PAIRWISE.replace("reference.json", "reference_cut.jsonl"),
        r"reference_cut.jsonl:2: malformed JSON",
        server=Server(),
        check=_no_requests,
    ),
    Case("utf16-outputs", "held", "eval responses {d}/utf16.jsonl", r"utf16.jsonl:1: not UTF-8"),
    Case("recipe-bad-yaml", "held", TRAIN + " --config {d}/bad.yaml", r"bad.yaml:2: malformed YAML"),
    Case("experiment-bad-yaml", "held", "run {d}/bad.yaml --out {d}/out/run", r"bad.yaml:2: malformed YAML"),
    Case("experiment-unknown-key", "held", "run {d}/experiment_unknown.yaml --out {d}/out/run", r"bogus: Extra inputs"),
    Case("annotations-a-folder", "held", "metrics winrate {d}/out", r"out: is a directory"),
    Case("report-not-a-run", "held", "report {d}/out", r"out: not a run directory"),
]
