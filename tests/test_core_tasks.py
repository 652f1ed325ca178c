"""Task loaders on the real shared data, prompt strings as lm-eval writes them, hub rows normalised alike."""

from __future__ import annotations

import pytest

from rtune.errors import RtuneError
from rtune.evals.core import tasks as core_tasks
from rtune.evals.core.prompts import PromptStyle, mc_request, prompt_style
from rtune.evals.core.tasks import MC_TASKS, MMLU_CATEGORY, load_gsm8k, parse_tasks


@pytest.mark.parametrize(
    "task, count",
    [
        ("arc_easy", 2376),
        ("arc_challenge", 1172),
        ("openbookqa", 500),
        ("piqa", 1838),
        ("hellaswag", 10042),
        ("mmlu", 14042),
    ],
)
def test_loaders_count_the_full_sets(shared_data, task, count):
    items = MC_TASKS[task].load(shared_data)
    assert len(items) == count
    assert len({item.id for item in items}) == count
    assert all(0 <= item.gold < len(item.choices) for item in items)


def test_mmlu_has_57_subjects_in_lm_eval_groups_and_a_5_shot_dev_split(shared_data):
    items = MC_TASKS["mmlu"].load(shared_data)
    assert {item.subject for item in items} == set(MMLU_CATEGORY) and len(MMLU_CATEGORY) == 57
    categories = ("stem", "other", "social_sciences", "humanities")
    assert {c: sum(v == c for v in MMLU_CATEGORY.values()) for c in categories} == {
        "stem": 19,
        "other": 13,
        "social_sciences": 12,
        "humanities": 13,
    }
    dev = MC_TASKS["mmlu"].load_fewshot(shared_data)
    assert len(dev) == 285 and all(sum(d.subject == s for d in dev) == 5 for s in MMLU_CATEGORY)


def test_prompt_strings_match_lm_eval(shared_data):
    arc = MC_TASKS["arc_easy"].load(shared_data)[0]
    assert arc.text == (
        "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:"
    )
    assert arc.answer == "Sunlight is the source of energy for nearly all ecosystems."
    piqa = MC_TASKS["piqa"].load(shared_data)[0]
    assert piqa.text == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
    assert len(piqa.choices) == 2
    obqa = MC_TASKS["openbookqa"].load(shared_data)[1]
    assert (obqa.text, obqa.answer) == ("There is most likely going to be fog around:", "a marsh")
    mmlu = MC_TASKS["mmlu"].load(shared_data)[0]
    assert mmlu.text == (
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )
    assert (mmlu.choices, mmlu.answer, mmlu.subject) == (("A", "B", "C", "D"), "B", "abstract_algebra")
    hellaswag = MC_TASKS["hellaswag"].load(shared_data)[0]
    assert hellaswag.text == "Roof shingle removal: A man is sitting on a roof. He"  # ctx_b capitalised as lm-eval
    assert hellaswag.choices[3] == "starts pulling up roofing on a roof."


def test_plain_and_chat_requests(shared_data, tiny_model_dir):
    from rtune.models import load_tokenizer

    item = MC_TASKS["mmlu"].load(shared_data)[0]
    shots = MC_TASKS["mmlu"].load_fewshot(shared_data)[:2]
    description = MC_TASKS["mmlu"].description("abstract_algebra")
    plain = mc_request(item, shots, description, PromptStyle("lm-eval", False))
    assert plain.context == (
        description
        + shots[0].text
        + " "
        + shots[0].answer
        + "\n\n"
        + shots[1].text
        + " "
        + shots[1].answer
        + "\n\n"
        + item.text
    )
    assert description == "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    assert plain.continuations == (" A", " B", " C", " D")
    chat = mc_request(item, [], "", prompt_style(load_tokenizer(str(tiny_model_dir)), None, "lm-eval"))
    assert chat.context == f"<|user|>\n{item.text}\n<|assistant|>\n"  # the Tulu inference prompt
    assert chat.continuations == ("A", "B", "C", "D")  # lm-eval drops the target delimiter in chat mode


def test_hellaswag_preprocessing():
    assert (
        core_tasks.hellaswag_preprocess("Act: [header] How to x [title] Do y  now [step] ok ")
        == "Act: How to x. Do y now ok"
    )
    fragment = core_tasks._capitalise_last_fragment("A boat. the child and a man")
    assert core_tasks.hellaswag_text("Canoeing", fragment) == "Canoeing: A boat. The child and a man"


def test_hub_rows_normalise_to_the_same_items(monkeypatch):
    hub_rows = {
        ("allenai/ai2_arc", "ARC-Easy", "test"): [
            {"question": "Why?", "answerKey": "B", "choices": {"text": ["a", "b"], "label": ["A", "B"]}}
        ],
        ("allenai/openbookqa", "main", "test"): [
            {"question_stem": "Stem", "answerKey": "A", "choices": {"text": ["x", "y"], "label": ["A", "B"]}}
        ],
        ("baber/piqa", None, "validation"): [{"goal": "Goal", "sol1": "s1", "sol2": "s2", "label": 1}],
        ("Rowan/hellaswag", None, "validation"): [
            {
                "activity_label": "Act",
                "ctx_a": "A man sits.",
                "ctx_b": "he",
                "endings": ["stands up [substeps] now.", "b", "c", "d"],
                "label": "0",
            }
        ],
        ("openai/gsm8k", "main", "test"): [{"question": "2+2?", "answer": "2+2=<<2+2=4>>4\n#### 4"}],
    }
    monkeypatch.setattr(core_tasks, "load_rows", lambda dataset, config, split: hub_rows[(dataset, config, split)])
    [arc] = MC_TASKS["arc_easy"].load(None)
    assert (arc.text, arc.choices, arc.gold) == ("Question: Why?\nAnswer:", ("a", "b"), 1)
    [obqa] = MC_TASKS["openbookqa"].load(None)
    assert (obqa.text, obqa.gold) == ("Stem", 0)
    [piqa] = MC_TASKS["piqa"].load(None)
    assert (piqa.text, piqa.choices, piqa.gold) == ("Question: Goal\nAnswer:", ("s1", "s2"), 1)
    [hs] = MC_TASKS["hellaswag"].load(None)
    assert (hs.text, hs.choices[0], hs.gold) == ("Act: A man sits. He", "stands up now.", 0)
    [gsm] = load_gsm8k(None)
    assert gsm.target == "4"


def test_bad_rows_and_names_are_clear_errors(tmp_path):
    (tmp_path / "arc").mkdir()
    (tmp_path / "arc" / "arc_easy.jsonl").write_text('{"query": "Question: q", "choices": ["a", "b"], "gold": 5}\n')
    with pytest.raises(RtuneError, match=r"arc_easy.jsonl: row 1: gold label 5 out of range"):
        MC_TASKS["arc_easy"].load(tmp_path)
    with pytest.raises(RtuneError, match=r"dataset 'piqa': piqa/valid.jsonl \+ piqa/valid-labels.lst not found under"):
        MC_TASKS["piqa"].load(tmp_path)
    with pytest.raises(RtuneError, match="unknown task"):
        parse_tasks("mmlu,arc_medium")
    assert parse_tasks("all")[-1] == "gsm8k" and parse_tasks("piqa, piqa,mmlu") == ["piqa", "mmlu"]
