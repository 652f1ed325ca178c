"""rtune annotate: the blind pairs (format, seeded order, a folder's own copy) and the SQLite judgments store."""

from __future__ import annotations

import json
import sqlite3

import pytest

from rtune.annotate.pairs import (
    PAIRS_FILE,
    BlindPair,
    adopt_pairs,
    dir_pairs,
    pairs_from_outputs,
    read_pairs,
    study_pairs,
    write_pairs,
)
from rtune.annotate.settings import PairsSource
from rtune.annotate.store import STORE_FILE, AlreadyJudged, Store
from rtune.errors import RtuneError
from rtune.judges.pairs import model_shown_first


def _write(path, rows):
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


@pytest.fixture
def outputs_files(tmp_path):
    instructions = [f"Question {i}: explain topic {i}." for i in range(12)]
    model = _write(
        tmp_path / "rt.json",
        [
            {"instruction": text, "output": f"RT answer {i}", "generator": "rt-model"}
            for i, text in enumerate(instructions[:10])
        ],
    )
    reference = _write(
        tmp_path / "it.json",
        [
            {"instruction": text, "output": f"IT answer {i}", "generator": "it-model"}
            for i, text in reversed(list(enumerate(instructions)))
            if i != 3
        ],
    )  # instruction 3 only in the model's file
    return model, reference, instructions


def test_pairs_from_outputs_share_instructions_in_the_outputs_order_with_a_seeded_side(outputs_files):
    model, reference, instructions = outputs_files
    pairs = pairs_from_outputs(model, reference, seed=7)
    assert [p.instruction for p in pairs] == [instructions[i] for i in range(10) if i != 3]
    first = pairs[0]
    assert (first.output_1, first.generator_1) == ("IT answer 0", "it-model")
    assert (first.output_2, first.generator_2) == ("RT answer 0", "rt-model")
    assert [p.shown_first for p in pairs] == [2 if model_shown_first(7, p.instruction) else 1 for p in pairs]
    assert {p.shown_first for p in pairs} == {1, 2}  # both layouts occur
    assert pairs_from_outputs(model, reference, seed=7) == pairs  # the same seed, the same layout
    assert [p.shown_first for p in pairs_from_outputs(model, reference, seed=8)] != [p.shown_first for p in pairs]
    assert len({p.id for p in pairs}) == len(pairs)
    assert pairs_from_outputs(model, reference, seed=7, limit=4) == pairs[:4]
    assert first.side_output("left") == first.shown_first and first.side_output("right") == 3 - first.shown_first


def test_blind_pairs_file_round_trips_and_bad_files_name_the_pair(outputs_files, tmp_path):
    model, reference, _ = outputs_files
    pairs = pairs_from_outputs(model, reference)
    path = tmp_path / "blind.json"
    write_pairs(path, pairs)
    rows = json.loads(path.read_text())
    assert set(rows[0]) == {"id", "instruction", "output_1", "generator_1", "output_2", "generator_2", "shown_first"}
    assert read_pairs(path) == pairs
    assert read_pairs(path, limit=2) == pairs[:2]

    rows[1]["shown_first"] = 3
    _write(path, rows)
    with pytest.raises(RtuneError, match=r"blind.json: pair 2, field 'shown_first'"):
        read_pairs(path)
    rows[1]["shown_first"] = 1
    rows[2]["id"] = rows[0]["id"]
    _write(path, rows)
    with pytest.raises(RtuneError, match="pair 3: id .* appears twice"):
        read_pairs(path)
    _write(path, {"not": "a list"})
    with pytest.raises(RtuneError, match="expected a JSON list"):
        read_pairs(path)


def test_a_folder_keeps_its_pairs_may_grow_but_never_changes_them(outputs_files, tmp_path):
    model, reference, _ = outputs_files
    folder = tmp_path / "study"
    with pytest.raises(RtuneError, match="not an annotate folder"):
        dir_pairs(folder)
    some = pairs_from_outputs(model, reference, limit=3)
    assert adopt_pairs(folder, some) == some
    assert (folder / PAIRS_FILE).is_file() and dir_pairs(folder) == some
    more = pairs_from_outputs(model, reference)
    assert adopt_pairs(folder, more) == more  # a larger --limit extends the study
    changed = [more[0].model_copy(update={"output_2": "another answer"}), *more[1:]]
    with pytest.raises(RtuneError, match="already holds a different set of pairs"):
        adopt_pairs(folder, changed)
    with pytest.raises(RtuneError, match="already holds a different set of pairs"):
        adopt_pairs(folder, more[1:])  # a pair it judges would go missing
    assert dir_pairs(folder) == more


def test_study_pairs_from_outputs_a_pairs_file_or_the_folder_itself(outputs_files, tmp_path):
    model, reference, _ = outputs_files
    folder = tmp_path / "study"
    made = study_pairs(PairsSource(directory=folder, outputs=model, reference=reference, seed=3, limit=5))
    assert made == pairs_from_outputs(model, reference, seed=3, limit=5) and dir_pairs(folder) == made
    assert study_pairs(PairsSource(directory=folder)) == made  # the folder alone goes on with its pairs
    assert study_pairs(PairsSource(directory=folder, limit=2)) == made[:2]
    write_pairs(tmp_path / "blind.json", made)
    assert study_pairs(PairsSource(directory=folder, pairs_file=tmp_path / "blind.json")) == made
    for wrong, message in (
        (dict(outputs=model), "go together"),
        (dict(seed=1), "--seed applies"),
        (dict(pairs_file=tmp_path / "blind.json", seed=1), "a pairs file fixes the display order"),
        (dict(pairs_file=tmp_path / "blind.json", outputs=model, reference=reference), "not both"),
    ):
        with pytest.raises(RtuneError, match=message):
            study_pairs(PairsSource(directory=folder, **wrong))


def test_store_records_in_wal_mode_and_a_new_process_sees_every_judgment(tmp_path):
    store = Store.in_dir(tmp_path)
    assert store.journal_mode() == "wal"
    with sqlite3.connect(tmp_path / STORE_FILE) as db:  # WAL is a property of the file, not of one connection
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    first = store.record("alice", "p1", "left", 2)
    store.record("alice", "p2", "tie", 1)
    store.record("bob", "p1", "right", 2)
    assert first.seq == 1 and first.shown_first == 2 and first.created_at.endswith("+00:00")

    reopened = Store.in_dir(tmp_path)  # what a restarted server sees
    assert [(j.annotator, j.pair_id, j.choice, j.shown_first) for j in reopened.judgments()] == [
        ("alice", "p1", "left", 2),
        ("alice", "p2", "tie", 1),
        ("bob", "p1", "right", 2),
    ]
    assert [j.pair_id for j in reopened.judgments("alice")] == ["p1", "p2"]
    assert reopened.annotators() == ["alice", "bob"]


def test_undo_withdraws_the_latest_judgment_of_that_annotator_only_and_keeps_history(tmp_path):
    store = Store(tmp_path / "j.sqlite")
    store.record("alice", "p1", "left", 1)
    store.record("alice", "p2", "skip", 2)
    store.record("bob", "p1", "tie", 1)
    undone = store.undo("alice")
    assert (undone.pair_id, undone.choice) == ("p2", "skip") and undone.undone_at is not None
    assert [j.pair_id for j in store.judgments("alice")] == ["p1"]
    assert [j.pair_id for j in store.judgments("bob")] == ["p1"]
    store.record("alice", "p2", "right", 2)  # judged again after the undo
    assert [(j.pair_id, j.choice) for j in store.judgments("alice")] == [("p1", "left"), ("p2", "right")]
    assert [j.choice for j in store.judgments("alice", include_undone=True)] == ["left", "skip", "right"]
    assert store.undo("alice").choice == "right" and store.undo("alice").choice == "left"
    assert store.undo("alice") is None
    assert store.judgments("alice") == [] and store.annotators() == ["bob"]


def test_a_second_live_judgment_of_the_same_pair_is_refused(tmp_path):
    store = Store.in_dir(tmp_path)
    store.record("alice", "p1", "left", 1)
    with pytest.raises(AlreadyJudged, match="already judged pair p1"):
        store.record("alice", "p1", "right", 1)
    with pytest.raises(RtuneError, match="choice must be one of"):
        store.record("alice", "p2", "both", 1)
    assert [j.choice for j in store.judgments(include_undone=True)] == ["left"]


def test_a_file_that_is_not_a_database_is_a_user_error(tmp_path):
    (tmp_path / STORE_FILE).write_text("this is not SQLite, " * 100)
    with pytest.raises(RtuneError, match="not a judgments database"):
        Store.in_dir(tmp_path)


def test_pair_model_rejects_a_third_side():
    with pytest.raises(ValueError):
        BlindPair(
            id="x", instruction="i", output_1="a", generator_1="g1", output_2="b", generator_2="g2", shown_first=0
        )
