"""The `alpaca_eval_2` annotator against alpaca_eval 0.6.6 itself: same prompt bytes, same request, same preferences,
same win rate and standard error. alpaca_eval's own code does the other half of every comparison."""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import pytest

from openai_server import OpenAIServer, Reply
from rtune.judges import pairwise
from rtune.judges.alpaca_eval_annotator import ANNOTATOR, load_annotator, messages_for, model_shown_first, preference
from rtune.judges.pairwise import PairwiseSettings
from rtune.winrate.annotations import read_annotations
from rtune.winrate.metrics import win_rate_report

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # alpaca_eval 0.6.6 imports pkg_resources, which warns that it is deprecated
    alpaca_eval = pytest.importorskip("alpaca_eval")
    from alpaca_eval import completion_parsers, constants, utils
    from alpaca_eval.annotators import PairwiseAnnotator
    from alpaca_eval.metrics import get_winrate

JUDGE_MODEL = "gpt-4-1106-preview"
# Awkward texts on purpose: a placeholder spelled inside an instruction (alpaca_eval fills it too), braces, triple
# quotes, ChatML-looking text, surrounding whitespace, non-ASCII; and one pair whose outputs are identical.
PAIRS = [
    ("Write a haiku about {output_1} and {output_2}.", "  Leaves fall {softly}\n", 'Autumn """wind""" blows.'),
    ("Explain `dict.get` in Python.", "Use d.get(k, default) — it never raises.", "```python\n{}.get('x')\n```"),
    ("Quote <|im_end|> back to me.", "<|im_end|>", "I cannot see any marker."),
    ("Résumé tips?", "Keep it to one page.\n\n", "\tUse action verbs; quantify results."),
    ("Same answer twice?", "Yes.", "Yes."),
    ("What is 2 + 2?", "4", "Four, since two plus two is four."),
]


def _outputs(tmp_path: Path) -> tuple[Path, Path]:
    reference = [{"instruction": i, "output": ref, "generator": "ref"} for i, ref, _ in PAIRS]
    model = [{"instruction": i, "output": out, "generator": "mine"} for i, _, out in PAIRS]
    paths = tmp_path / "reference.json", tmp_path / "model.json"
    for path, rows in zip(paths, (reference, model), strict=True):
        path.write_text(json.dumps(rows), encoding="utf-8")
    return paths


def _their_annotator():
    """alpaca_eval's own annotator, as `alpaca_eval evaluate` builds it (seed 0), caching nothing."""
    return PairwiseAnnotator(annotators_config=ANNOTATOR, caching_path=None)


def _logprobs(request) -> Reply:
    """A judge whose belief depends on the whole prompt, with tokens around m/M that must not count."""
    text = request.body["messages"][-1]["content"]
    p_first = 0.05 + 0.9 * (sum(map(ord, text)) % 97) / 96
    top = {"m": math.log(p_first), "M": math.log(1 - p_first), " m": -2.0, "Model": -4.0, "MM": -5.0}
    return Reply("m", finish_reason="length", tokens=[("m", top["m"], top)])


def test_the_annotator_is_the_installed_packages_config():
    ours = load_annotator()
    config = utils.load_configs(constants.EVALUATORS_CONFIG_DIR / ANNOTATOR)[ANNOTATOR]
    assert ours.version == "0.6.6" == alpaca_eval.__version__
    assert ours.prompt_template == utils.read_or_return(
        config["prompt_template"], relative_to=constants.EVALUATORS_CONFIG_DIR
    )
    completion, parser = config["completions_kwargs"], config["completion_parser_kwargs"]
    assert (ours.max_tokens, ours.temperature, ours.top_logprobs, ours.leaderboard_judge) == (
        completion["max_tokens"],
        completion["temperature"],
        completion["top_logprobs"],
        completion["model_name"],
    )
    assert (ours.numerator_token, list(ours.denominator_tokens)) == (
        parser["numerator_token"],
        parser["denominator_tokens"],
    )


def test_prompts_are_byte_identical_to_alpaca_evals_own_formatting():
    import pandas as pd

    single = _their_annotator().annotators[ANNOTATOR]
    frame = pd.DataFrame([{"instruction": i, "output_1": ref, "output_2": out} for i, ref, out in PAIRS])
    prepared = single._preprocess(frame)  # their order coin (and row shuffle)
    prompts, prepared = single._make_prompts(prepared)
    annotator = load_annotator()
    swaps = set()
    for prompt, (_, row) in zip(prompts, prepared.iterrows(), strict=True):
        instruction, reference, output = PAIRS[row.name]
        swapped = bool(row["is_switched_outputs"])
        swaps.add(swapped)
        assert model_shown_first(0, instruction) == swapped
        theirs = utils.prompt_to_chatml(prompt.strip())  # what openai_completions sends as `messages`
        assert list(messages_for(annotator, instruction, reference, output, swapped)) == theirs
    assert swaps == {True, False}  # both orders were compared


@pytest.mark.parametrize(
    "top",
    [
        {"m": -0.1, "M": -2.4},
        {"M": -0.01, "m": -4.6, "The": -6.0},
        {"m": -0.7},
        {"M": -0.2, " m": -1.0},
        {"m": -1e-9, "M": -25.0},
        {"m": -3.0, "M": -3.0, "m ": -0.1},
    ],
)
@pytest.mark.parametrize("swapped", [False, True])
def test_preferences_equal_alpaca_evals_logprob_parser(top, swapped):
    annotator = load_annotator()
    completion = {
        "logprobs": {
            "content": [
                {"token": "x", "logprob": -1.0, "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()]}
            ]
        }
    }
    kwargs = {
        "numerator_token": annotator.numerator_token,
        "denominator_tokens": list(annotator.denominator_tokens),
        "is_binarize": False,
    }
    (theirs,) = completion_parsers.logprob_parser(completion, **kwargs)
    theirs = 3 - theirs if swapped else theirs  # their switch processor undoes the order afterwards
    assert preference(annotator, top, swapped) == theirs


def test_a_top_k_without_m_or_m_is_unreadable_for_both():
    completion = {"logprobs": {"content": [{"top_logprobs": [{"token": "The", "logprob": -0.1}]}]}}
    theirs = completion_parsers.logprob_parser(completion, "m", ["m", "M"], is_binarize=False)
    assert math.isnan(theirs[0]) and preference(load_annotator(), {"The": -0.1}, False) is None


def test_run_sends_alpaca_evals_request_and_gets_its_preferences(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    reference, model = _outputs(tmp_path)
    logging.disable(logging.WARNING)  # alpaca_eval logs every request
    try:
        with OpenAIServer(responder=_logprobs) as server:
            theirs = _their_annotator().annotate_head2head(
                json.loads(reference.read_text()),
                json.loads(model.read_text()),
                openai_api_base=server.base_url,
                openai_api_keys=["test"],
                num_procs=1,
            )
            their_requests = {r.body["messages"][-1]["content"]: r.body for r in server.requests}
            served = len(server.requests)
            settings = PairwiseSettings(
                outputs=model,
                reference=reference,
                out=tmp_path / "ours",
                judge=f"openai:{JUDGE_MODEL}@{server.base_url}",
                length_controlled=False,
            )
            report = pairwise.run(settings)
            our_requests = {r.body["messages"][-1]["content"]: r.body for r in server.requests[served:]}
    finally:
        logging.disable(logging.NOTSET)
    assert settings.annotator == "alpaca_eval_2" and report.n_annotated == len(PAIRS)
    assert len(their_requests) == len(our_requests) == len(PAIRS) - 1  # identical outputs: 1.5, nobody asked
    assert set(our_requests) == set(their_requests)  # the same prompts, byte for byte
    for text, ours in our_requests.items():
        body = their_requests[text]
        assert ours["messages"] == body["messages"]
        assert {k: ours[k] for k in ("model", "max_tokens", "temperature", "logprobs", "top_logprobs")} == {
            k: body[k] for k in ("model", "max_tokens", "temperature", "logprobs", "top_logprobs")
        }
        assert body["top_p"] == 1.0 and "top_p" not in ours  # 1.0 is the API's default: the same request
        assert set(ours) - set(body) == {"seed"}  # rtune's client pins the sampled token; logprobs do not depend on it
    ours_by_instruction = {a.instruction: a.preference for a in read_annotations(report.annotations_file)}
    assert ours_by_instruction == {row["instruction"]: row["preference"] for row in theirs}  # exactly, not approx
    assert ours_by_instruction["Same answer twice?"] == 1.5


def test_win_rate_and_standard_error_equal_alpaca_evals_metric(shared_data):
    import pandas as pd

    files = sorted((shared_data / "alpaca_eval" / "annotations").glob("*.json"))
    assert len(files) >= 30
    for path in files:
        ours = win_rate_report(read_annotations(path))
        theirs = get_winrate(pd.DataFrame(json.loads(path.read_text())))
        assert ours.win_rate == pytest.approx(theirs["win_rate"], rel=1e-12), path.name
        assert ours.standard_error == pytest.approx(theirs["standard_error"], rel=1e-9), path.name
        assert ours.discrete_win_rate == pytest.approx(theirs["discrete_win_rate"], rel=1e-12), path.name
        assert (ours.n_wins, ours.n_wins_base, ours.n_draws, ours.n_total) == (
            theirs["n_wins"],
            theirs["n_wins_base"],
            theirs["n_draws"],
            theirs["n_total"],
        ), path.name
