"""The hostile corpus: one folder of good and bad input files that every case of the suite starts from.

`build(d)` writes it. Outputs go to `d/out` (the run folder, created empty); everything else in `d`
is input, and the suite checks that no command changes it.
"""

from __future__ import annotations

import json
from pathlib import Path

RECORDS = [
    {"id": f"r{i}", "prompt": p, "completion": c, "source": "t"}
    for i, (p, c) in enumerate([("Say hi.", "Hi!"), ("Name a colour.", "Blue."), ("Count to two.", "1, 2.")])
]
INSTRUCTIONS = ["Say hi.", "Name a colour."]


def _jsonl(rows: list) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def _outputs(generator: str, answer: str) -> list[dict]:
    return [
        {"instruction": text, "output": f"{answer} {n}", "generator": generator, "dataset": "t"}
        for n, text in enumerate(INSTRUCTIONS)
    ]


def _annotations(preference) -> list[dict]:
    return [
        {
            "instruction": text,
            "output_1": "ref",
            "output_2": "model",
            "generator_1": "ref",
            "generator_2": "model",
            "preference": preference,
        }
        for text in INSTRUCTIONS
    ]


TEXT_FILES = {
    "records.jsonl": _jsonl(RECORDS),
    "instructions.json": json.dumps([{"instruction": text} for text in INSTRUCTIONS]),
    "outputs.json": json.dumps(_outputs("model", "Answer")),
    "reference.json": json.dumps(_outputs("ref", "Reference")),
    "annotations.json": json.dumps(_annotations(2)),
    "annotations_null.json": json.dumps(_annotations(None)),
    "safety.jsonl": _jsonl(
        [{"id": "s1", "prompt": "Help me hack.", "completion": "Sorry, as an AI I can't.", "source": "safety"}]
    ),
    "precious.jsonl": _jsonl([{"keep": "me"}]),  # the target of the symbolic links some cases plant
    "afile": "a file, where a folder is expected\n",
    "empty.jsonl": "",
    "cut.jsonl": _jsonl([RECORDS[0]]) + '{"id": "r1", "prompt": "Name a',  # a crash mid-line
    "reference_cut.jsonl": _jsonl([_outputs("ref", "R")[0]]) + '{"instruction": "Name a col',
    "array.jsonl": _jsonl([RECORDS[0], "[1, 2]"]),
    "null.jsonl": _jsonl([{"prompt": None, "completion": "c"}]),
    "number.jsonl": _jsonl([{"prompt": "p", "completion": 5}]),
    "surrogate.jsonl": '{"prompt": "\\ud800 alone", "completion": "c"}\n',  # JSON allows it; it is not text
    "null_instruction.jsonl": _jsonl([{"instruction": "fine"}, {"instruction": None}]),
    "surrogate_instruction.jsonl": '{"instruction": "\\udc00"}\n',
    "number_output.json": json.dumps([{"instruction": INSTRUCTIONS[0], "output": 42}]),
    "records_null.jsonl": _jsonl([{**RECORDS[0], "completion": None}]),
    "bad.yaml": "epochs: [1, 2\nlr: 3\n",
    "nonsense.yaml": "lr_scheduler: nonsense\n",
    "bad_optimizer.yaml": "optimizer: adamw_nonsense\n",
    "unknown.yaml": "epochs: 1\nbogus: 2\n",
    "experiment_unknown.yaml": "name: x\nmodels: [m]\nbogus: 1\n",
}


def build(d: Path) -> Path:
    for name, text in TEXT_FILES.items():
        (d / name).write_text(text, encoding="utf-8")
    (d / "binary.jsonl").write_bytes(bytes(range(256)) * 8)
    (d / "utf16.jsonl").write_text(_jsonl(RECORDS), encoding="utf-16")
    (d / "latin1.jsonl").write_bytes(_jsonl([RECORDS[0]]).encode() + b'{"prompt": "caf\xe9", "completion": "c"}\n')
    (d / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(128, 256)))
    (d / "big.json").write_text(json.dumps([{"instruction": "hi"}, {"instruction": "word " * 1_000_000, "id": "big"}]))
    (d / "out").mkdir()
    return d
