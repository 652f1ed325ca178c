"""The hf backend, the persistent cache and `from_spec`, on the tiny random model (fp32, no download)."""

from __future__ import annotations

import json
import shutil

import pytest

from rtune.errors import RtuneError
from rtune.generation import (
    CachedGenerator,
    DecodingParams,
    GenerationCache,
    GenerationRequest,
    GenerationResult,
    ModelSpec,
    from_spec,
    in_request_order,
    parse_spec,
)
from rtune.generation.hf import HFGenerator
from rtune.generation.render import encode_request, truncate_at_stop

PROMPTS = [
    "Hello",
    "Write a short poem about the sea.",
    "Explain why the sky is blue: sunlight scatters off air molecules, and",
    "def add(a, b):",
    "Paris is the capital of",
    "Question: What is 2 + 3?\nAnswer:",
    "The quick brown fox jumps over the lazy dog and then runs far away",
]

CHAT_PROMPTS = [
    "Give three tips for staying healthy.",
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain photosynthesis to a ten-year-old.",
    "How do I reverse a list in Python?",
    "Why is the sky blue?",
    "Translate 'good morning' into Spanish.",
    "What are the benefits of reading books every day, and how can someone build the habit?",
]


def _requests(params: DecodingParams) -> list[GenerationRequest]:
    raw = [GenerationRequest(prompt=p, params=params) for p in PROMPTS]
    chat = [GenerationRequest(messages=({"role": "user", "content": p},), params=params) for p in PROMPTS]
    return raw + chat


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> HFGenerator:
    return HFGenerator(str(tiny_model_dir), batch_size=4, bf16=False)


# -- specs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("gemma-3-270m", ModelSpec("hf", "gemma-3-270m")),
        ("hf:runs/rt/model", ModelSpec("hf", "runs/rt/model")),
        ("vllm:meta-llama/Llama-3.1-8B", ModelSpec("vllm", "meta-llama/Llama-3.1-8B")),
        ("openai:gpt-4o", ModelSpec("openai", "gpt-4o")),
        ("openai:gpt-4o@http://127.0.0.1:8000/v1", ModelSpec("openai", "gpt-4o", "http://127.0.0.1:8000/v1")),
        ("openai:llama3:8b@http://localhost:11434/v1", ModelSpec("openai", "llama3:8b", "http://localhost:11434/v1")),
    ],
)
def test_specs_name_backend_model_and_server(spec, expected):
    assert parse_spec(spec) == expected


def test_bad_specs_and_options_are_user_errors():
    with pytest.raises(RtuneError, match="names backend 'vllm'"):
        parse_spec("vllm:x", backend="hf")
    with pytest.raises(RtuneError, match="needs the openai backend"):
        parse_spec("hf:model@http://127.0.0.1:1/v1")
    with pytest.raises(RtuneError, match="names no model"):
        parse_spec("openai:")
    with pytest.raises(RtuneError, match="unknown generator option"):
        from_spec("openai:m@http://127.0.0.1:1/v1", batch_sise=3)
    assert parse_spec("my-model", backend="openai") == ModelSpec("openai", "my-model")


def test_vllm_backend_explains_when_missing(tiny_model_dir):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    with pytest.raises(RtuneError, match="pip install vllm"):
        from_spec(f"vllm:{tiny_model_dir}")


def test_a_request_is_either_a_prompt_or_messages():
    with pytest.raises(ValueError):
        GenerationRequest()
    with pytest.raises(ValueError):
        GenerationRequest(prompt="a", messages=({"role": "user", "content": "b"},))


# -- prompts ---------------------------------------------------------------------------------------


def test_bos_appears_once_whether_or_not_the_template_writes_it(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    bos = tokenizer.bos_token_id
    chat = GenerationRequest(messages=({"role": "user", "content": "Give me three tips."},))
    ids = encode_request(tokenizer, chat)
    assert ids[0] == bos and ids.count(bos) == 1
    assert tokenizer.decode(ids[1:]) == "<|user|>\nGive me three tips.\n<|assistant|>\n"  # the Tulu inference prompt
    tokenizer.chat_template = "{{ bos_token }}" + tokenizer.chat_template
    assert encode_request(tokenizer, chat) == ids
    raw = encode_request(tokenizer, GenerationRequest(prompt="Hello"))
    assert raw[0] == bos and raw.count(bos) == 1


def test_models_without_a_template_get_the_tulu_prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    from rtune.generation.render import render_text
    from rtune.templates import inference_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    request = GenerationRequest(messages=({"role": "user", "content": "Why?"},))
    assert render_text(tokenizer, request) == inference_prompt("Why?")


def test_stop_strings_cut_at_the_earliest():
    assert truncate_at_stop("abc # Answer: x # Query:", ("# Query:", "# Answer:")) == ("abc ", True)
    assert truncate_at_stop("abc", ("zz",)) == ("abc", False)


# -- hf backend ------------------------------------------------------------------------------------


def _by_batch_size(model: str, requests: list[GenerationRequest]) -> dict[int, list[GenerationResult]]:
    """Results of the generator every evaluation gets by default (no precision named) at batch sizes 1, 3 and 32."""
    return {size: from_spec(model, batch_size=size).generate(requests) for size in (1, 3, 32)}


def test_default_greedy_texts_do_not_depend_on_the_batch_size(tiny_model_dir):
    requests = _requests(DecodingParams(max_new_tokens=20))
    results = _by_batch_size(str(tiny_model_dir), requests)
    one_at_a_time = [(r.text, r.completion_tokens) for r in results[1]]
    assert [(r.text, r.completion_tokens) for r in results[3]] == one_at_a_time
    assert [(r.text, r.completion_tokens) for r in results[32]] == one_at_a_time
    assert all(r.finish_reason == "length" and r.completion_tokens == 20 for r in results[32])
    assert len({r.text for r in results[32]}) > 1  # results come back in request order, not batch order


@pytest.mark.slow
def test_smollm2_default_greedy_texts_do_not_depend_on_the_batch_size():
    """Eight chat instructions, 48 new tokens: a real model's near-ties are where a batch-dependent rounding shows."""
    from rtune.models import prepare_model

    params = DecodingParams(max_new_tokens=48)
    requests = [GenerationRequest(messages=({"role": "user", "content": p},), params=params) for p in CHAT_PROMPTS]
    texts = {
        size: [r.text for r in results]
        for size, results in _by_batch_size(prepare_model("smollm2-135m-instruct"), requests).items()
    }
    assert texts[3] == texts[1] and texts[32] == texts[1]
    assert len(set(texts[1])) == len(requests) and all(texts[1])


def _native_bf16() -> bool:
    import torch

    from rtune.models import native_bf16

    return native_bf16("cuda" if torch.cuda.is_available() else "cpu")


def _watch_logit_dtypes(monkeypatch) -> set:
    """The dtypes of the logits every model loaded from now on computes (its LM head's output)."""
    import rtune.models

    seen: set = set()
    load = rtune.models.load_model

    def load_and_watch(*args, **kwargs):
        model, tokenizer = load(*args, **kwargs)
        model.get_output_embeddings().register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
        return model, tokenizer

    monkeypatch.setattr(rtune.models, "load_model", load_and_watch)
    return seen


def _outputs(model_dir, folder, **settings) -> list[dict]:
    """`rtune generate`'s rows for PROMPTS, written to `folder` (its own cache)."""
    from rtune.generation.outputs import GenerateSettings, generate_outputs

    source = folder / "prompts.json"
    folder.mkdir()
    source.write_text(json.dumps([{"instruction": p} for p in PROMPTS]))
    out = folder / "outputs.json"
    generate_outputs(GenerateSettings(model=str(model_dir), input=str(source), out=out, max_new_tokens=20, **settings))
    return json.loads(out.read_text())


@pytest.mark.skipif(
    not _native_bf16(),
    reason="no native bf16 here (a CPU without avx512_bf16 or amx_bf16, no CUDA bf16): "
    "only there could a default pick bf16, so only there is the fp32 default worth proving",
)
def test_where_bf16_is_native_the_default_still_runs_fp32_and_bf16_runs_only_on_request(
    tiny_model_dir, tmp_path, monkeypatch
):
    import torch

    dtypes = _watch_logit_dtypes(monkeypatch)
    rows = {size: _outputs(tiny_model_dir, tmp_path / f"fp32-{size}", batch_size=size) for size in (1, 3, 32)}
    assert dtypes == {torch.float32}
    assert [r["output"] for r in rows[3]] == [r["output"] for r in rows[1]] == [r["output"] for r in rows[32]]
    dtypes.clear()
    opted_in = _outputs(tiny_model_dir, tmp_path / "bf16", precision="bf16")
    assert dtypes == {torch.bfloat16} and {row["precision"] for row in opted_in} == {"bf16"}


def test_stop_strings_end_the_row_and_are_cut(tiny):
    free = tiny.generate([GenerationRequest(prompt="Hello", params=DecodingParams(max_new_tokens=20))])[0]
    stop = free.text[3:7]
    assert stop.strip() and free.text.find(stop) == 3
    others = [GenerationRequest(prompt=p, params=DecodingParams(max_new_tokens=20, stop=(stop,))) for p in PROMPTS]
    results = tiny.generate(others)
    stopped = results[0]
    assert stopped.text == free.text[:3] and stopped.finish_reason == "stop"
    assert stopped.completion_tokens < 20
    assert all(stop not in r.text for r in results)


def test_any_configured_eos_token_ends_generation(tiny_model_dir, tmp_path):
    import torch

    from rtune.models import load_model

    model, tokenizer = load_model(str(tiny_model_dir))
    prompt = tokenizer("Hello", return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**prompt, max_new_tokens=5, do_sample=False)[0, prompt["input_ids"].shape[1] :].tolist()
    # make the model's third token an end-of-sequence token, as models with several EOS ids do
    copy = shutil.copytree(tiny_model_dir, tmp_path / "two-eos")
    config_path = copy / "generation_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token_id"] = [tokenizer.eos_token_id, ids[2]]
    config_path.write_text(json.dumps(config))
    request = GenerationRequest(prompt="Hello", params=DecodingParams(max_new_tokens=12))
    ended = HFGenerator(str(copy), bf16=False).generate([request])[0]
    assert ids[2] not in ids[:2]
    assert ended.finish_reason == "stop" and ended.completion_tokens == 3
    assert ended.text == tokenizer.decode(ids[:2], skip_special_tokens=True)


def test_top_logprobs_match_the_model_distribution(tiny, tiny_model_dir):
    import torch

    from rtune.models import load_model

    request = GenerationRequest(
        prompt="Paris is the capital of", params=DecodingParams(max_new_tokens=4, top_logprobs=3)
    )
    result = tiny.generate([request, *_requests(DecodingParams(max_new_tokens=4, top_logprobs=3))[:3]])[0]
    assert len(result.logprobs) == result.completion_tokens == 4
    for item in result.logprobs:
        assert len(item.top) <= 3 and item.logprob == pytest.approx(max(item.top.values()))  # greedy picks the top
    model, tokenizer = load_model(str(tiny_model_dir))
    ids = encode_request(tokenizer, request)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    expected = torch.log_softmax(logits, dim=-1).max().item()
    assert result.logprobs[0].logprob == pytest.approx(expected, abs=1e-4)


def test_sampling_is_seeded(tiny):
    def run(seed):
        params = DecodingParams(max_new_tokens=12, temperature=1.0, seed=seed)
        return [r.text for r in tiny.generate([GenerationRequest(prompt=p, params=params) for p in PROMPTS[:3]])]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_stream_text_shows_the_greedy_answer(tiny):
    request = GenerationRequest(messages=({"role": "user", "content": "Hi"},), params=DecodingParams(max_new_tokens=10))
    assert "".join(tiny.stream_text(request)) == tiny.generate([request])[0].text


# -- cache and resume ------------------------------------------------------------------------------


class Counting:
    """A streaming generator that counts the requests it is asked, and can die after `fail_after` results."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after = inner, fail_after
        self.fingerprint = inner.fingerprint
        self.asked = 0

    def stream(self, requests):
        self.asked += len(requests)
        for done, pair in enumerate(self.inner.stream(requests)):
            if self.fail_after is not None and done == self.fail_after:
                raise KeyboardInterrupt("killed")
            yield pair

    def generate(self, requests):
        return in_request_order(self.stream(requests), len(requests))


def test_cache_hit_makes_no_model_call(tiny, tmp_path):
    requests = _requests(DecodingParams(max_new_tokens=8))
    first = CachedGenerator(Counting(tiny), tmp_path / "cache.sqlite")
    fresh = first.generate(requests)
    assert first.inner.asked == len(requests) and not any(r.cached for r in fresh)
    again = CachedGenerator(Counting(tiny), tmp_path / "cache.sqlite")
    batches_before = tiny.calls
    cached = again.generate(requests)
    assert again.inner.asked == 0 and tiny.calls == batches_before
    assert all(r.cached for r in cached)
    assert [r.model_copy(update={"cached": False}) for r in cached] == fresh
    # another decoding setting is another key
    other = again.generate([requests[0].model_copy(update={"params": DecodingParams(max_new_tokens=9)})])
    assert again.inner.asked == 1 and not other[0].cached


def test_identical_requests_are_generated_once(tiny, tmp_path):
    request = GenerationRequest(prompt="Hello", params=DecodingParams(max_new_tokens=5))
    cached = CachedGenerator(Counting(tiny), tmp_path / "cache.sqlite")
    results = cached.generate([request, request, request])
    assert cached.inner.asked == 1 and results[0] == results[1] == results[2]


def test_killed_generation_resumes_to_the_uninterrupted_result(tiny, tmp_path):
    requests = _requests(DecodingParams(max_new_tokens=10))
    uninterrupted = tiny.generate(requests)
    path = tmp_path / "cache.sqlite"
    with pytest.raises(KeyboardInterrupt):
        CachedGenerator(Counting(tiny, fail_after=5), path).generate(requests)
    assert len(GenerationCache(path)) == 5  # finished items were saved as they came
    resumed = CachedGenerator(Counting(tiny), path)
    results = resumed.generate(requests)
    assert resumed.inner.asked == len(requests) - 5
    assert [r.text for r in results] == [r.text for r in uninterrupted]
    assert sum(r.cached for r in results) == 5


def test_failed_calls_are_not_cached(tmp_path):
    class Broken:
        fingerprint = "broken"

        def generate(self, requests):
            raise RuntimeError("server down")

    cached = CachedGenerator(Broken(), tmp_path / "cache.sqlite")
    with pytest.raises(RuntimeError):
        cached.generate([GenerationRequest(prompt="x")])
    assert len(cached.cache) == 0


def test_non_streaming_generators_are_cached_too(tmp_path):
    class Echo:
        fingerprint = "echo"

        def __init__(self):
            self.asked = 0

        def generate(self, requests):
            self.asked += len(requests)
            return [
                GenerationResult(text=r.prompt.upper(), finish_reason="stop", prompt_tokens=1, completion_tokens=1)
                for r in requests
            ]

    echo = Echo()
    cached = CachedGenerator(echo, tmp_path / "cache.sqlite")
    requests = [GenerationRequest(prompt=f"p{i}") for i in range(40)]
    assert [r.text for r in cached.generate(requests)] == [f"P{i}" for i in range(40)]
    assert [r.text for r in cached.generate(requests)] == [f"P{i}" for i in range(40)] and echo.asked == 40


def test_from_spec_wraps_the_cache(tiny_model_dir, tmp_path):
    generator = from_spec(f"hf:{tiny_model_dir}", cache=tmp_path / "c.sqlite", batch_size=2, concurrency=3, bf16=False)
    assert isinstance(generator, CachedGenerator) and generator.inner.batch_size == 2
    assert generator.fingerprint == HFGenerator(str(tiny_model_dir), bf16=False).fingerprint


def test_vllm_adapter_maps_requests_and_results(tiny_model_dir, monkeypatch):
    """vLLM cannot run here (no GPU); a stand-in engine with vLLM's documented types checks our side of the API."""
    import sys
    import types
    from dataclasses import dataclass, field

    @dataclass
    class Logprob:
        logprob: float
        rank: int | None = None
        decoded_token: str | None = None

    @dataclass
    class SamplingParams:
        max_tokens: int = 16
        temperature: float = 1.0
        top_p: float = 1.0
        stop: list | None = None
        seed: int | None = None
        logprobs: int | None = None

    @dataclass
    class Completion:
        text: str
        token_ids: list
        finish_reason: str
        logprobs: list | None = None

    @dataclass
    class Output:
        prompt_token_ids: list
        outputs: list = field(default_factory=list)

    class LLM:
        def __init__(self, model, **options):
            self.model, self.options, self.seen = model, options, []

        def generate(self, prompts, sampling, use_tqdm=True):
            self.seen.append((prompts, sampling))
            outputs = []
            for prompt, params in zip(prompts, sampling, strict=False):
                ids = prompt["prompt_token_ids"]
                logprobs = [
                    {7: Logprob(-0.5, 1, "a"), 8: Logprob(-1.5, 2, "b")},
                    {9: Logprob(-3.0, 5, "c"), 7: Logprob(-0.2, 1, "a")},
                ]
                outputs.append(
                    Output(
                        ids,
                        [
                            Completion(
                                f"len {len(ids)} # Query: more", [7, 9], "stop", logprobs if params.logprobs else None
                            )
                        ],
                    )
                )
            return outputs

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    generator = from_spec(f"vllm:{tiny_model_dir}", tensor_parallel_size=2, chunk_size=2, batch_size=5)
    assert generator.llm.options["tensor_parallel_size"] == 2
    params = DecodingParams(max_new_tokens=5, stop=("# Query:",), top_logprobs=1)
    results = generator.generate(_requests(params)[:3] + [GenerationRequest(prompt="Hi", params=DecodingParams())])
    assert len(generator.llm.seen) == 2  # chunks of two
    first_prompts, first_sampling = generator.llm.seen[0]
    assert first_prompts[0]["prompt_token_ids"] == encode_request(generator.tokenizer, _requests(params)[0])
    assert first_sampling[0] == SamplingParams(
        max_tokens=5, temperature=0.0, top_p=1.0, stop=["# Query:"], seed=0, logprobs=1
    )
    assert results[0].text.endswith(" ") and "# Query:" not in results[0].text and results[0].completion_tokens == 2
    assert [(t.token, t.logprob, t.top) for t in results[0].logprobs] == [
        ("a", -0.5, {"a": -0.5}),
        ("c", -3.0, {"a": -0.2}),
    ]
    assert results[3].logprobs is None and generator.llm.seen[1][1][1].stop is None


def test_rows_that_end_leave_the_batch_and_results_stay_the_same(tiny, monkeypatch):
    import rtune.generation.hf as hf

    free = tiny.generate(_requests(DecodingParams(max_new_tokens=16)))
    stops = tuple(
        dict.fromkeys(r.text[4:7] for r in free[:3] if r.text[4:7].strip())
    )  # strings that end some rows early
    requests = _requests(DecodingParams(max_new_tokens=16, stop=stops, top_logprobs=2))
    monkeypatch.setattr(hf, "CHUNK_TOKENS", 1000)  # one generate call per batch
    whole = tiny.generate(requests)
    monkeypatch.setattr(hf, "CHUNK_TOKENS", 3)
    chunked = tiny.generate(requests)
    assert {r.finish_reason for r in whole} == {"stop", "length"}
    same = [
        (r.text, r.finish_reason, r.completion_tokens, [(t.token, sorted(t.top)) for t in r.logprobs]) for r in whole
    ]
    assert [
        (r.text, r.finish_reason, r.completion_tokens, [(t.token, sorted(t.top)) for t in r.logprobs]) for r in chunked
    ] == same
    for ours, theirs in zip(chunked, whole, strict=False):  # fp32 sums in a smaller batch may differ in the last bit
        assert [t.logprob for t in ours.logprobs] == pytest.approx([t.logprob for t in theirs.logprobs], abs=1e-5)


def test_a_row_that_ends_early_is_saved_before_its_batch_ends(tiny, tmp_path, monkeypatch):
    import rtune.generation.hf as hf

    monkeypatch.setattr(hf, "CHUNK_TOKENS", 2)
    prompts = PROMPTS[:4]  # one batch of the fixture's 4
    free = tiny.generate([GenerationRequest(prompt=p, params=DecodingParams(max_new_tokens=16)) for p in prompts])
    stop = free[0].text[2:5]
    requests = [GenerationRequest(prompt=p, params=DecodingParams(max_new_tokens=16, stop=(stop,))) for p in prompts]
    ended = tiny.generate(requests)
    assert (
        ended[0].finish_reason == "stop"
        and ended[0].completion_tokens <= 6
        and "length" in {r.finish_reason for r in ended}
    )
    calls = tiny.calls
    stream = CachedGenerator(tiny, tmp_path / "cache.sqlite").stream(requests)
    index, first = next(stream)  # a kill right now loses only the rows still running
    assert index == 0 and first == ended[0]
    assert len(GenerationCache(tmp_path / "cache.sqlite")) == 1  # saved at once
    assert tiny.calls - calls <= 3  # a few chunks in, long before the 8 chunks the batch needs
    stream.close()
