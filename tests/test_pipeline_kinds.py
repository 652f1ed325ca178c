"""Stage kinds from outside the package, and one prompt for `rtune generate` and `rtune run`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cli_runner import run_cli

TOY_KIND = '''
"""A toy evaluation: counts the words of the cell's model folder name. Registered by this file alone."""
from pathlib import Path

from pydantic import BaseModel

from rtune.pipeline.experiment import Selection
from rtune.pipeline.plan import Stage
from rtune.pipeline.registry import Kind, register
from rtune.report.figures import Section

RUNS = Path(__file__).with_name("toy-runs.txt")


class CountSpec(Selection):
    word: str = "tiny"


class CountResult(BaseModel):
    word: str
    found: bool


def plan(builder, spec):
    for cell in builder.chosen(spec):
        builder.add(Stage(f"{cell.name}/count", "count", cell, {"model": builder.source(cell), \
"settings": spec.model_dump()},
                          run, builder.model_deps(cell)))


def run(ctx):
    with RUNS.open("a") as handle:
        handle.write(ctx.stage.key + "\\n")
    return CountResult(word=ctx.settings["word"], found=ctx.settings["word"] in ctx.stage.inputs["model"]["spec"])


def section(stages):
    return Section("Toy count", "Whether the model spec holds the word.", ["Cell", "Found"],
                   [[s.cell, str(s.result.found)] for s in stages])


register(Kind("count", CountResult, run, CountSpec, plan, section))
'''


def test_a_kind_from_a_plugin_module_runs_through_rtune_run_with_caching(tiny_model_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "toy_kind.py").write_text(TOY_KIND)
    (tmp_path / "exp.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "toy",
                "plugins": ["toy_kind.py"],
                "models": {"tiny": str(tiny_model_dir)},
                "methods": ["base"],
                "evals": {"count": {"word": "tiny"}},
            }
        )
    )
    run_dir = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "run", str(tmp_path / "exp.yaml"), "--out", str(run_dir))
    assert code == 0, err
    assert (tmp_path / "toy-runs.txt").read_text() == "tiny/base/count\n"
    assert json.loads((run_dir / "stages/tiny/base/count/result.json").read_text()) == {"word": "tiny", "found": True}
    assert "| tiny/base | True |" in (run_dir / "report.md").read_text()
    code, _, err = run_cli(monkeypatch, capsys, "run", str(tmp_path / "exp.yaml"), "--out", str(run_dir))
    assert code == 0 and "1 cached, 0 to run" in err
    assert (tmp_path / "toy-runs.txt").read_text() == "tiny/base/count\n"  # cached: not run again


def test_an_unknown_plugin_or_evaluation_is_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(
        yaml.safe_dump({"name": "toy", "plugins": ["missing_kind.py"], "models": {"tiny": "x/y"}, "methods": ["base"]})
    )
    code, _, err = run_cli(monkeypatch, capsys, "run", str(path), "--dry-run")
    assert code == 2 and "plugin" in err and "missing_kind.py: no such file" in err


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _model_with_template(source: Path, target: Path, template: str | None) -> Path:
    shutil.copytree(source, target)
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    (target / "chat_template.jinja").unlink(missing_ok=True)
    if template is not None:
        config["chat_template"] = template
    config_path.write_text(json.dumps(config))
    return target


@pytest.mark.parametrize("template", [None, CHATML], ids=["no-template", "own-template"])
def test_generate_and_run_send_the_same_prompt_bytes(tiny_model_dir, tmp_path, monkeypatch, capsys, template):
    import rtune.generation.hf as hf
    from rtune.generation.render import render_text

    model = _model_with_template(tiny_model_dir, tmp_path / "model", template)
    (tmp_path / "ask.jsonl").write_text(
        "".join(json.dumps({"instruction": text}) + "\n" for text in ("Name a sea.", "Why is it salty?"))
    )
    seen: list[str] = []
    real = hf.encode_request

    def recording(tokenizer, request):
        seen.append(render_text(tokenizer, request))
        return real(tokenizer, request)

    monkeypatch.setattr(hf, "encode_request", recording)
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "generate",
        "--model",
        str(model),
        "--input",
        str(tmp_path / "ask.jsonl"),
        "--out",
        str(tmp_path / "gen" / "out.json"),
        "--max-new-tokens",
        "2",
    )
    assert code == 0, err
    from_generate, seen[:] = sorted(seen), []
    (tmp_path / "exp.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "same",
                "models": {"m": str(model)},
                "methods": ["base"],
                "generation": {"max_new_tokens": 2},
                "evals": {"examples": {"instructions": "ask.jsonl"}},
            }
        )
    )
    code, _, err = run_cli(monkeypatch, capsys, "run", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert sorted(seen) == from_generate and len(from_generate) == 2
    if template is None:
        assert from_generate[0] == "<|user|>\nName a sea.\n<|assistant|>\n"  # the paper's inference prompt
    else:
        assert from_generate[0].startswith("<|im_start|>user\nName a sea.<|im_end|>")
