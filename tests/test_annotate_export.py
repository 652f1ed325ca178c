"""rtune annotate: AlpacaEval export (display order undone), the human win rate, agreement, and their CLI."""

from __future__ import annotations

import json

import pytest

from cli_runner import run_cli
from rtune.annotate.agreement import AgreementSettings, agreement, compare, verdict
from rtune.annotate.export import ExportSettings, export_annotations, human_annotations, human_winrate, human_winrates
from rtune.annotate.pairs import BlindPair, adopt_pairs
from rtune.annotate.store import Store
from rtune.errors import RtuneError
from rtune.winrate.annotations import read_annotations

N = 11
SHOWN_FIRST = [1, 2, 2, 1, 2, 1, 1, 2, 2, 1, 2]  # which output each item shows on the left


def _pair(i: int) -> BlindPair:
    return BlindPair(
        id=f"pair-{i}",
        instruction=f"Instruction {i}",
        output_1=f"reference answer {i}",
        generator_1="it",
        output_2=f"model answer {i}",
        generator_2="rt",
        shown_first=SHOWN_FIRST[i],
    )


def _side(pair: BlindPair, verdict_: str) -> str:
    """The button a person presses to give `verdict_` ("1" reference, "2" model, "tie", "skip") on this layout."""
    if verdict_ in ("tie", "skip"):
        return verdict_
    return "left" if pair.shown_first == int(verdict_) else "right"


# Verdicts per item, made up for the hand computation below (item 10 only alice gave a verdict for).
ALICE = ["1", "1", "2", "2", "2", "tie", "1", "2", "2", "1", "2"]
BOB = ["1", "2", "2", "2", "1", "tie", "1", "2", "tie", "1", "skip"]
# LLM judge: weighted preferences, rounded to the side they lean to: 2 2 2 2 2 1 1 2 2 1
LLM = [1.9, 1.7, 1.99, 1.6, 1.55, 1.3, 1.1, 1.8, 1.51, 1.2]


@pytest.fixture
def folder(tmp_path):
    pairs = [_pair(i) for i in range(N)]
    directory = tmp_path / "study"
    adopt_pairs(directory, pairs)
    store = Store.in_dir(directory)
    for name, verdicts in (("alice", ALICE), ("bob", BOB)):
        for pair, v in zip(pairs, verdicts, strict=True):
            store.record(name, pair.id, _side(pair, v), pair.shown_first)
    return directory


def _llm_file(path, *, mismatched_row: bool = True):
    rows = [
        {
            "instruction": f"Instruction {i}",
            "output_1": f"reference answer {i}",
            "output_2": f"model answer {i}",
            "generator_1": "it",
            "generator_2": "rt",
            "preference": p,
            "annotator": "weighted_gpt4",
        }
        for i, p in enumerate(LLM)
    ]
    if mismatched_row:  # the judge compared other outputs for item 10: no evidence either way
        rows.append(
            {
                "instruction": "Instruction 10",
                "output_1": "reference answer 10",
                "output_2": "ANOTHER model's answer",
                "preference": 2.0,
                "annotator": "weighted_gpt4",
            }
        )
    path.write_text(json.dumps(rows))
    return path


def test_export_undoes_the_display_order_and_keeps_annotators_apart(folder):
    result = export_annotations(ExportSettings(directory=folder))
    assert result.path == folder / "annotations.json"
    assert (result.n_rows, result.n_pairs, result.n_skipped, result.judgments) == (22, 11, 1, {"alice": 11, "bob": 11})
    rows = read_annotations(result.path)  # our reader, which `rtune metrics winrate` uses
    expected = {"1": 1.0, "2": 2.0, "tie": 1.5, "skip": None}
    assert [(r.instruction, r.annotator, r.preference) for r in rows] == [
        (f"Instruction {i}", name, expected[verdicts[i]])
        for i in range(N)
        for name, verdicts in (("alice", ALICE), ("bob", BOB))
    ]
    first = json.loads(result.path.read_text())[0]
    assert first["output_1"] == "reference answer 0" and first["generator_2"] == "rt" and first["pair_id"] == "pair-0"
    # the same person choice ("left") means the reference on one layout and the model on the other
    raw = {(r.pair_id, r.annotator): r for r in rows}
    assert raw[("pair-0", "alice")].choice == "left" and raw[("pair-0", "alice")].preference == 1.0
    assert raw[("pair-1", "alice")].choice == "right" and raw[("pair-1", "alice")].preference == 1.0
    assert raw[("pair-2", "alice")].choice == "left" and raw[("pair-2", "alice")].preference == 2.0

    without = export_annotations(ExportSettings(directory=folder, out=folder / "no-skips.json", include_skipped=False))
    assert without.n_rows == 21 and all(r.preference is not None for r in read_annotations(without.path))


def test_undone_judgments_are_not_exported(folder):
    store = Store.in_dir(folder)
    store.undo("bob")  # bob's skip of item 10
    store.undo("bob")  # and his tie on item 9
    store.record("bob", "pair-9", _side(_pair(9), "1"), SHOWN_FIRST[9])
    rows = [r for r in human_annotations(folder)[0] if r.annotator == "bob"]
    assert [r.preference for r in rows] == [{"1": 1.0, "2": 2.0, "tie": 1.5}[v] for v in BOB[:9]] + [1.0]


def test_human_win_rates_per_annotator_and_pooled_per_pair(folder, tmp_path):
    per_person = human_winrates(folder)
    # alice: 5 model wins, 4 reference wins, 1 tie... over 11 verdicts: (6 × 1 + 1 × 0.5) / 11
    assert per_person["alice"].n == 11 and per_person["alice"].win_rate == pytest.approx(100 * 6.5 / 11)
    assert per_person["bob"].n == 10 and per_person["bob"].win_rate == pytest.approx(100 * 5 / 10)
    pooled = human_winrate(folder)
    scores = {"1": 0.0, "2": 1.0, "tie": 0.5}
    per_pair = [(scores[a] + scores[b]) / 2 if b != "skip" else scores[a] for a, b in zip(ALICE, BOB, strict=True)]
    assert pooled.n == N and pooled.win_rate == pytest.approx(100 * sum(per_pair) / N)
    assert pooled.ci_low <= pooled.win_rate <= pooled.ci_high and pooled.ci_low < pooled.ci_high
    assert (pooled.generator, pooled.baseline) == ("rt", "it")
    assert human_winrate(tmp_path / "nothing-here") is None and human_winrates(tmp_path / "nothing-here") == {}


def test_verdicts_and_agreement_match_a_hand_computation(folder, tmp_path):
    assert [verdict(p) for p in (1.0, 1.49, 1.5, 0, 1.51, 2.0, None)] == ["1", "1", "tie", "tie", "2", "2", None]
    result = agreement(AgreementSettings(directory=folder, with_files=[_llm_file(tmp_path / "llm.json")]))
    llm_path = str(tmp_path / "llm.json")
    assert result.people == ["alice", "bob"] and result.files == {llm_path: [llm_path]}
    people, llm = result.comparisons[0], {c.rater_a: c for c in result.comparisons[1:]}
    # alice vs bob on items 0-9 (bob skipped 10): agree on 0 2 3 5 6 7 9 -> 7 / 10.
    # marginals alice 1:4 2:5 tie:1, bob 1:4 2:4 tie:2 -> p_e = (16 + 20 + 2) / 100 = .38; kappa = (.7 - .38) / .62
    assert (people.rater_a, people.rater_b, people.n_shared) == ("alice", "bob", 10)
    assert people.percent_agreement == pytest.approx(70.0) and people.cohen_kappa == pytest.approx(0.32 / 0.62)
    # alice vs the judge on items 0-9 (its row for item 10 compares other outputs): agree on 2 3 4 6 7 8 9 -> 7 / 10;
    # judge marginals 1:3 2:7 -> p_e = (4·3 + 5·7) / 100 = .47; kappa = (.7 - .47) / .53
    assert llm["alice"].n_shared == 10 and llm["alice"].n_mismatched == 1
    assert llm["alice"].percent_agreement == pytest.approx(70.0)
    assert llm["alice"].cohen_kappa == pytest.approx(0.23 / 0.53)
    # bob vs the judge on items 0-9: agree on 0 2 3 6 7 9 -> 6 / 10; bob 1:4 2:4 tie:2 -> p_e = (12 + 28) / 100 = .4
    assert llm["bob"].percent_agreement == pytest.approx(60.0) and llm["bob"].cohen_kappa == pytest.approx(0.2 / 0.6)


def test_compare_edge_cases():
    assert compare({"a": "1"}, {"b": "1"}) == (0, None, None)
    # kappa is undefined when both raters give one verdict throughout
    assert compare({"a": "1", "b": "1"}, {"a": "1", "b": "1"}) == (2, 100.0, None)
    n, agree, kappa = compare({"a": "1", "b": "2"}, {"a": "2", "b": "1"})
    assert (n, agree, kappa) == (2, 0.0, pytest.approx(-1.0))


def test_cli_export_is_read_by_metrics_winrate_as_it_is(folder, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "annotate", "export", str(folder))
    assert code == 0, err
    assert "22 rows over 11 pairs (1 skipped)" in out and "alice: 11, bob: 11" in out
    code, out, err = run_cli(monkeypatch, capsys, "metrics", "winrate", str(folder / "annotations.json"), "--no-lc")
    assert code == 0, err
    report = json.loads(out)[str(folder / "annotations.json")]
    assert (report["n"], report["n_missing"]) == (21, 1)
    assert report["win_rate"] == pytest.approx(100 * (6.5 + 5) / 21)


def test_cli_agreement_prints_the_numbers(folder, tmp_path, monkeypatch, capsys):
    llm = _llm_file(tmp_path / "llm.json")
    code, out, err = run_cli(monkeypatch, capsys, "annotate", "agreement", str(folder), "--with", str(llm))
    assert code == 0, err
    assert "alice vs bob: 10 shared items, agreement 70.0%, Cohen's kappa 0.516" in out
    assert (
        f"alice vs {llm}: 10 shared items, agreement 70.0%, Cohen's kappa 0.434 (1 rows with other outputs left out)"
    ) in out
    code, out, err = run_cli(monkeypatch, capsys, "annotate", "agreement", str(folder), "--json")
    assert code == 0, err
    assert json.loads(out)["comparisons"][0]["cohen_kappa"] == pytest.approx(0.32 / 0.62)


def test_cli_user_errors_are_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "annotate", "export", str(tmp_path))
    assert code == 2 and "not an annotate folder" in err and "Traceback" not in err
    adopt_pairs(tmp_path, [_pair(0)])
    code, _, err = run_cli(monkeypatch, capsys, "annotate", "export", str(tmp_path))
    assert code == 2 and "no judgments yet" in err
    code, _, err = run_cli(monkeypatch, capsys, "annotate", "--outputs", "a.json", "--out", str(tmp_path))
    assert code == 2 and "--outputs and --reference go together" in err
    code, _, err = run_cli(monkeypatch, capsys, "annotate", "--pairs", "p.json", "--seed", "3", "--out", str(tmp_path))
    assert code == 2 and "--seed applies to --outputs/--reference only" in err
    with pytest.raises(RtuneError):
        export_annotations(ExportSettings(directory=tmp_path / "missing"))
