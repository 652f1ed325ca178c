"""rtune annotate in a real headless browser: Debian's chromium driven by Playwright.

Set RTUNE_SCREENSHOT=docs/annotate.png to keep the screenshot the judging test takes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cli_runner import run_cli
from rtune.annotate.export import ExportSettings, export_annotations
from rtune.annotate.pairs import BlindPair, adopt_pairs, pairs_from_outputs
from rtune.annotate.server import BackgroundServer, ServerSettings
from rtune.annotate.store import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (Debian: apt-get install -y chromium; `make test` installs it when it may)",
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# (instruction, instruction-tuned reference, response-tuned model); each output's first line is plain text
# the test finds on the page, to tell which side shows the model.
ITEMS = [
    (
        "Give me three tips for staying healthy.",
        "Here are three tips for staying healthy.\n\n1. Eat a balanced diet.\n2. Exercise regularly.\n"
        "3. Sleep seven to nine hours.",
        "Staying healthy comes down to a few habits.\n\n- **Eat well:** plenty of vegetables, fruit and whole grains.\n"
        "- **Move every day:** even a brisk 30-minute walk helps your heart.\n"
        "- **Rest:** keep a regular sleep schedule.",
    ),
    (
        "Write a Python function that reverses a string.",
        "You can reverse a string with slicing.\n\n"
        "```python\ndef reverse(text: str) -> str:\n    return text[::-1]\n```",
        "Slicing with a negative step does it in one line.\n\n```python\ndef reverse(text: str) -> str:\n"
        '    """Return `text` backwards."""\n    return text[::-1]\n\n\nassert reverse("abc") == "cba"\n```\n\n'
        "For very long strings this is also the fastest option in CPython, because the copy happens in C.\n\n"
        + "\n\n".join(f"Note {k}: a longer answer scrolls inside its own panel." for k in range(1, 25)),
    ),
    (
        "What is the capital of Australia?",
        "The capital of Australia is Canberra.",
        "Canberra is the capital, not Sydney.\n\nIt was chosen in 1908 as a compromise between Sydney and Melbourne.",
    ),
    (
        "Summarise the plot of Hamlet in two sentences.",
        "Prince Hamlet seeks revenge for his father's murder.",
        "Hamlet learns from his father's ghost that his uncle Claudius murdered the king.\n\n"
        "His hesitant pursuit of revenge ends in the deaths of nearly the whole court, himself included.",
    ),
    (
        "Explain photosynthesis to a ten-year-old.",
        "Plants make food from sunlight, water and air.",
        "Plants are like tiny kitchens powered by the sun.\n\n"
        "They mix *water* from the soil and *carbon dioxide* from the air, "
        "and sunlight turns them into sugar and oxygen.",
    ),
    (
        "Translate 'good morning' into French and Spanish.",
        "French: bonjour. Spanish: buenos días.",
        "Here are both translations.\n\n| Language | Good morning |\n|---|---|\n"
        "| French | Bonjour |\n| Spanish | Buenos días |",
    ),
    (
        "Suggest a name for a bakery.",
        "How about The Daily Loaf?",
        "A few ideas for your bakery.\n\n1. Rise & Shine\n2. The Crumb Corner\n3. Flour Power",
    ),
    (
        "Why is the sky blue?",
        "Because air scatters blue light more than red light.",
        "Sunlight is scattered by the molecules in the air.\n\n"
        "Short (blue) wavelengths scatter much more than long (red) ones, "
        "so blue light reaches your eyes from every direction of the sky.",
    ),
]


def _first_line(text: str) -> str:
    return text.split("\n")[0]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e .[dev])")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()


def _outputs(tmp_path: Path) -> tuple[Path, Path]:
    reference, model = tmp_path / "it.json", tmp_path / "rt.json"
    reference.write_text(json.dumps([{"instruction": i, "output": it, "generator": "tulu-it"} for i, it, _ in ITEMS]))
    model.write_text(json.dumps([{"instruction": i, "output": rt, "generator": "tulu-rt"} for i, _, rt in ITEMS]))
    return model, reference


def test_judge_undo_reload_finish_export_and_agreement(page, tmp_path, monkeypatch, capsys):
    from playwright.sync_api import expect

    model_file, reference_file = _outputs(tmp_path)
    pairs = pairs_from_outputs(model_file, reference_file, seed=0)
    assert {p.shown_first for p in pairs} == {1, 2}  # both layouts occur, so the export must undo them
    folder = tmp_path / "study"
    adopt_pairs(folder, pairs)
    progress, number = page.locator("#progress-text"), page.locator("#item-number")

    def model_side() -> str:
        left, right = page.inner_text("#left"), page.inner_text("#right")
        model = _first_line(ITEMS[int(number.inner_text().split()[1]) - 1][2])  # "(item 6 of 8)"
        assert (model in left) != (model in right), (left, right)
        return "left" if model in left else "right"

    def key_for(intent: str) -> str:
        if intent in ("tie", "skip"):
            return {"tie": "3", "skip": "s"}[intent]
        side = model_side() if intent == "model" else {"left": "right", "right": "left"}[model_side()]
        return {"left": "1", "right": "2"}[side]

    with BackgroundServer(ServerSettings(directory=folder, annotator="alice"), pairs) as server:
        page.goto(server.url)
        expect(progress).to_have_text("0 / 8")
        expect(page).to_have_title("rtune annotate")
        assert "tulu" not in page.content()  # blind: no model names anywhere on the page
        for done, intent in enumerate(["model", "reference", "tie", "skip", "model"], start=1):
            expect(number).to_have_text(f"(item {done} of 8)")
            if done == 2:
                scrolls = "[...document.querySelectorAll('.panel')].some(p => p.scrollHeight > p.clientHeight)"
                assert page.evaluate(scrolls)  # a long answer scrolls inside its panel
                page.screenshot(path=str(tmp_path / "annotate.png"))
                if os.environ.get("RTUNE_SCREENSHOT"):
                    shutil.copyfile(tmp_path / "annotate.png", os.environ["RTUNE_SCREENSHOT"])
            page.keyboard.press(key_for(intent))
            expect(progress).to_have_text(f"{done} / 8")
        expect(number).to_have_text("(item 6 of 8)")
        clicked = "left" if key_for("reference") == "1" else "right"
        page.click(f"#choose-{clicked}")  # item 6 by click: the reference...
        expect(progress).to_have_text("6 / 8")
        page.keyboard.press("u")  # ...undone
        expect(progress).to_have_text("5 / 8")
        expect(page.locator("#message")).to_contain_text("Undone")
        page.reload()
        expect(progress).to_have_text("5 / 8")
        expect(number).to_have_text("(item 6 of 8)")
        for done, intent in enumerate(["model", "reference", "model"], start=6):
            expect(number).to_have_text(f"(item {done} of 8)")
            page.keyboard.press(key_for(intent))
            expect(progress).to_have_text(f"{done} / 8")
        expect(page.locator("#finished")).to_be_visible()
        expect(page.locator("#judging")).to_be_hidden()
        expect(page.locator("#export-command")).to_have_text(f"rtune annotate export {folder}")
    assert page.errors == [] and page.dialogs == []

    history = Store.in_dir(folder).judgments(include_undone=True)
    assert len(history) == 9 and [j.pair_id for j in history if j.undone_at] == [pairs[5].id]
    assert next(j for j in history if j.undone_at).choice == clicked
    rows = json.loads(export_annotations(ExportSettings(directory=folder)).path.read_text())
    assert [(r["instruction"], r["annotator"], r["preference"]) for r in rows] == [
        (p.instruction, "alice", pref) for p, pref in zip(pairs, [2.0, 1.0, 1.5, None, 2.0, 2.0, 1.0, 2.0], strict=True)
    ]

    # A second annotator's file. Shared items (bob has 4, alice skipped it): 1 2 3 5 6 7 8,
    # alice 2 1 t 2 2 1 2, bob 2 2 t 1 2 1 1 -> agree on 1 3 6 7: 4 / 7;
    # marginals alice 2:4 1:2 t:1, bob 2:3 1:3 t:1 -> p_e = (12 + 6 + 1) / 49; kappa = (28 - 19) / (49 - 19) = 0.3.
    bob = tmp_path / "bob.json"
    bob.write_text(
        json.dumps(
            [
                {
                    "instruction": p.instruction,
                    "output_1": p.output_1,
                    "output_2": p.output_2,
                    "preference": pref,
                    "annotator": "bob",
                }
                for p, pref in zip(pairs, [2, 2, 1.5, 1, 1, 2, 1, 1], strict=True)
            ]
        )
    )
    code, out, err = run_cli(monkeypatch, capsys, "annotate", "agreement", str(folder), "--with", str(bob), "--json")
    assert code == 0, err
    (row,) = json.loads(out)["comparisons"]
    assert (row["rater_a"], row["rater_b"], row["n_shared"]) == ("alice", str(bob), 7)
    assert row["percent_agreement"] == pytest.approx(400 / 7) and row["cohen_kappa"] == pytest.approx(0.3)


XSS = """<script>window.__pwned = 'script'; alert('script')</script>

<img src=x onerror="window.__pwned = 'img'; alert('img')"> <svg onload="window.__pwned = 'svg'"></svg>

<iframe src="javascript:window.__pwned='iframe'"></iframe> <a href="javascript:window.__pwned='anchor'">raw anchor</a>

[click me](javascript:window.__pwned='link';alert('link')) [shout](JaVaScRiPt:window.__pwned='upper')
[entity](javascript&#58;window.__pwned='entity') <javascript:window.__pwned='autolink'> [by reference][evil]

[evil]: javascript:window.__pwned='reference'

A [safe link](https://example.org/) and ![an image](https://example.org/pixel.png)."""


def test_model_html_and_javascript_links_never_run_or_become_live(page, tmp_path):
    from playwright.sync_api import expect

    pair = BlindPair(
        id="x",
        instruction="Say hello. <script>window.__pwned = 'instruction'</script>",
        output_1=XSS,
        generator_1="a",
        output_2="Hello! <img src=x onerror=\"window.__pwned = 'second'\">",
        generator_2="b",
        shown_first=1,
    )
    with BackgroundServer(ServerSettings(directory=tmp_path, annotator="alice"), [pair]) as server:
        page.goto(server.url)
        expect(page.locator("#progress-text")).to_have_text("0 / 1")
        expect(page.locator("#left")).to_contain_text("<script>window.__pwned = 'script'")  # shown as text
        expect(page.locator("#left")).to_contain_text("[click me](javascript:")  # a literal, not a link
        page.get_by_text("click me", exact=False).first.click()
        page.wait_for_timeout(300)
        found = page.evaluate("""() => {
            const all = [...document.querySelectorAll('#judging *')];
            return {
              pwned: window.__pwned === undefined ? null : window.__pwned,
              elements: all.filter(e => ['script', 'img', 'svg', 'iframe', 'object', 'embed']
                                          .includes(e.localName)).length,
              handlers: all.filter(e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on'))).length,
              links: [...document.querySelectorAll('a')].map(a => [a.href, a.rel, a.target]),
              url: location.href,
            };
        }""")
        assert found == {
            "pwned": None,
            "elements": 0,
            "handlers": 0,
            "url": server.url,
            "links": [
                [url, "noopener noreferrer nofollow", "_blank"]  # an image stays a plain link
                for url in ("https://example.org/", "https://example.org/pixel.png")
            ],
        }
        page.keyboard.press("1")  # the page still works
        expect(page.locator("#progress-text")).to_have_text("1 / 1")
    assert page.dialogs == [] and page.errors == []
