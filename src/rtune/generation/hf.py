"""In-process transformers backend: batched generation with left padding, sorted by length, KV cache.

One-prompt-at-a-time `generate` (the paper's HF path) leaves most of a CPU or GPU idle; batching
requests of similar length keeps padding low and multiplies throughput, while greedy outputs stay
those of the sequential loop. That holds in fp32, the default: in bf16 the rounding of a row
depends on the shape of its batch, so what a model "says" would change with the batch size and
with which items a resumed run still had to generate. bf16 is an explicit opt-in.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator

from rtune.generation.base import DecodingParams, GenerationRequest, GenerationResult, TokenLogprob, in_request_order
from rtune.generation.render import encode_request, stream_until_stop, truncate_at_stop
from rtune.io import stable_hash


class _StopStrings:
    """Stopping criterion: a row is done once its generated text contains a stop string.

    Only the tail of each row is decoded, enough tokens to hold the longest stop string.
    """

    def __init__(self, tokenizer, stop: tuple[str, ...], prompt_width: int):
        self.tokenizer, self.stop, self.prompt_width = tokenizer, stop, prompt_width
        self.window = max(len(s) for s in stop) + 2

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        tails = input_ids[:, max(self.prompt_width, input_ids.shape[1] - self.window) :].tolist()
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=False)
        return torch.tensor([any(s in text for s in self.stop) for text in texts], device=input_ids.device)


class _LogprobRecorder:
    """Logits processor that records, per step, each row's chosen-token logprob and its top-k alternatives.

    Storing full logits would take vocabulary × steps × rows floats; this keeps one step's
    distribution and resolves the chosen token when the next step (or `finish`) reveals it.
    """

    def __init__(self, k: int):
        self.k = k
        self.previous = None
        self.chosen: list = []  # per step: (rows,) logprob of the token picked
        self.top: list = []  # per step: (values (rows, k), indices (rows, k))

    def __call__(self, input_ids, scores):
        import torch

        self._resolve(input_ids[:, -1])
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        self.previous = logprobs
        self.top.append(tuple(t.cpu() for t in torch.topk(logprobs, self.k, dim=-1)))
        return scores

    def _resolve(self, tokens) -> None:
        if self.previous is not None:
            self.chosen.append(self.previous.gather(1, tokens[:, None].to(self.previous.device))[:, 0].cpu())
            self.previous = None

    def finish(self, last_tokens) -> None:
        self._resolve(last_tokens)

    def row(self, b: int) -> list[tuple[float, list[float], list[int]]]:
        """(chosen logprob, top values, top indices) per step of batch row `b`."""
        return [
            (float(chosen[b]), values[b].tolist(), indices[b].tolist())
            for chosen, (values, indices) in zip(self.chosen, self.top, strict=False)
        ]


_WARNED: set[str] = set()


def _say_once(message: str) -> None:
    """Once per process, however many generators a run builds, and on one line (never wrapped)."""
    if message not in _WARNED:
        _WARNED.add(message)
        from rich.console import Console

        Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/yellow] {message}", highlight=False)


# Prompts decoded together. Each decoding step reads every weight once for the whole batch, so on a
# CPU throughput keeps rising well past 16 (SmolLM2-135M, 64 prompts: 56 tok/s at 16, 86 at 32, 130
# at 64); rows that end early still ride along until their batch ends, which bounds the gain.
DEFAULT_BATCH_SIZE = 32
CHUNK_TOKENS = 32  # new tokens between two hand-backs of finished rows (a kill loses at most this much work per batch)


class HFGenerator:
    """A local model (registered name, folder, GGUF, hub id) answering batches of requests."""

    def __init__(self, model: str, batch_size: int = DEFAULT_BATCH_SIZE, bf16: bool = False, device: str | None = None):
        from rtune.models import model_fingerprint, resolve_device

        self.spec = model
        self.batch_size = max(1, batch_size)
        self.device = resolve_device(device)
        self.bf16 = bf16
        if bf16:
            _say_once(
                "bf16 generation: greedy outputs now depend on which prompts share a batch "
                "(fp32, the default, does not)"
            )
        self.fingerprint = stable_hash({"backend": "hf", "model": model_fingerprint(model), "bf16": self.bf16})
        self.calls = 0  # batches run on the model; tests count them
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    @classmethod
    def of_loaded(cls, model, tokenizer, batch_size: int = DEFAULT_BATCH_SIZE) -> HFGenerator:
        """A generator over a model already in memory (a model being trained): no loading, no fingerprint, fp32."""
        generator = cls.__new__(cls)
        generator.spec, generator.batch_size, generator.bf16 = None, max(1, batch_size), False
        generator.device, generator.fingerprint, generator.calls = str(model.device), "in-memory", 0
        generator._model, generator._tokenizer, generator._lock = model, tokenizer, threading.Lock()
        return generator

    def _load(self):
        if self._model is None:
            import torch

            from rtune.models import load_model

            on_gpu_bf16 = self.bf16 and self.device != "cpu"
            model, tokenizer = load_model(self.spec, dtype=torch.bfloat16 if on_gpu_bf16 else torch.float32)
            tokenizer.padding_side = "left"
            self._model, self._tokenizer = model.to(self.device), tokenizer
        return self._model, self._tokenizer

    @property
    def tokenizer(self):
        return self._load()[1]

    def _eos_ids(self) -> list[int]:
        model, tokenizer = self._load()
        configured = model.generation_config.eos_token_id
        ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        return sorted(ids)

    def _generation_config(self, params: DecodingParams, max_new_tokens: int):
        """Every decoding knob set explicitly, so a model's own generation_config cannot change the outputs."""
        from transformers import GenerationConfig

        sampling = (
            {"temperature": params.temperature, "top_p": params.top_p, "top_k": 0} if params.temperature > 0 else {}
        )
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            return_dict_in_generate=True,
            do_sample=bool(sampling),
            num_beams=1,
            repetition_penalty=1.0,
            eos_token_id=self._eos_ids(),
            pad_token_id=self.tokenizer.pad_token_id,
            **sampling,
        )

    def _autocast(self):
        import contextlib

        import torch

        if self.bf16 and self.device == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _padded(self, prompts: list[list[int]]):
        import torch

        width, pad = max(len(ids) for ids in prompts), self._tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=self.device)
        attention_mask = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=self.device
        )
        return input_ids, attention_mask

    def _decode(self, prompts: list[list[int]], params: DecodingParams) -> Iterator[tuple[int, GenerationResult]]:
        """Generate in chunks of CHUNK_TOKENS new tokens; after each chunk the rows that ended are handed back.

        A finished row leaves the batch (its keys and values are dropped from the cache), so it never
        waits for a long one, the batch gets cheaper as it empties, and a killed job loses at most one
        chunk of work. The remaining rows continue from the cache exactly where they were.
        """
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        model, tokenizer = self._load()
        input_ids, attention_mask = self._padded(prompts)
        width = input_ids.shape[1]
        stopping = StoppingCriteriaList([_StopStrings(tokenizer, params.stop, width)] if params.stop else [])
        rows = list(range(len(prompts)))  # the prompt index of each row still in the batch
        tokens: list[list[int]] = [[] for _ in prompts]
        steps: list[list] = [[] for _ in prompts]  # per prompt: (chosen logprob, top values, top indices) per step
        cache = None
        if params.temperature > 0:
            torch.manual_seed(params.seed)
        while rows:
            budget = params.max_new_tokens - len(tokens[rows[0]])
            recorder = _LogprobRecorder(params.top_logprobs) if params.top_logprobs else None
            self.calls += 1
            with torch.inference_mode(), self._autocast():
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    cache=cache,
                    stopping_criteria=stopping,
                    generation_config=self._generation_config(params, min(CHUNK_TOKENS, budget)),
                    logits_processor=LogitsProcessorList([recorder] if recorder else []),
                )
            sequences = out.sequences
            if recorder:
                recorder.finish(sequences[:, -1])
            new = sequences[:, input_ids.shape[1] :].tolist()
            keep = []
            for b, row in enumerate(rows):
                tokens[row] += new[b]
                if recorder:
                    steps[row] += recorder.row(b)
                result = self._result(tokens[row], len(prompts[row]), params, steps[row] if recorder else None)
                if result.finish_reason == "stop" or len(tokens[row]) >= params.max_new_tokens:
                    yield row, result
                else:
                    keep.append(b)
            if not keep:
                return
            cache = out.cache
            if len(keep) < len(rows):
                cache.batch_select_indices(torch.tensor(keep, device=sequences.device))
            index = torch.tensor(keep, device=sequences.device)
            added = torch.ones(
                (len(keep), sequences.shape[1] - input_ids.shape[1]), dtype=attention_mask.dtype, device=self.device
            )
            input_ids, attention_mask = sequences[index], torch.cat([attention_mask[index], added], dim=1)
            rows = [rows[b] for b in keep]

    def _result(
        self, tokens: list[int], prompt_tokens: int, params: DecodingParams, steps: list | None
    ) -> GenerationResult:
        tokenizer = self._tokenizer
        eos = set(self._eos_ids())
        end = next((i for i, token in enumerate(tokens) if token in eos), None)
        kept = tokens if end is None else tokens[:end]
        text, stopped = truncate_at_stop(tokenizer.decode(kept, skip_special_tokens=True), params.stop)
        if stopped:  # count only the tokens up to the one that completed the stop string (it is near the end)
            while (
                len(kept) > 1
                and truncate_at_stop(tokenizer.decode(kept[:-1], skip_special_tokens=True), params.stop)[1]
            ):
                kept = kept[:-1]
        used = len(kept) + (end is not None and not stopped)
        finish = "stop" if end is not None or stopped else "length"
        return GenerationResult(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=used,
            logprobs=self._logprobs(tokens[:used], steps) if steps is not None else None,
        )

    def _logprobs(self, tokens: list[int], steps: list) -> list[TokenLogprob]:
        decode = self._tokenizer.decode
        out = []
        for token, (chosen, values, indices) in zip(tokens, steps, strict=False):
            top = {}
            for value, index in zip(values, indices, strict=False):
                top.setdefault(decode([index]), value)
            out.append(TokenLogprob(token=decode([token]), logprob=chosen, top=top))
        return out

    def stream(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Results batch by batch: requests grouped by decoding params, longest prompts first."""
        if not requests:
            return
        with self._lock:
            tokenizer = self.tokenizer
            encoded = [encode_request(tokenizer, request) for request in requests]
            groups: dict[DecodingParams, list[int]] = defaultdict(list)
            for index, request in enumerate(requests):
                groups[request.params].append(index)
            for params, indices in groups.items():
                indices.sort(key=lambda i: len(encoded[i]), reverse=True)
                for start in range(0, len(indices), self.batch_size):
                    batch = indices[start : start + self.batch_size]
                    for row, result in self._decode([encoded[i] for i in batch], params):
                        yield batch[row], result

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return in_request_order(self.stream(requests), len(requests))

    def _stream_one(self, ids: list[int], params: DecodingParams, streamer, cancel: threading.Event) -> None:
        """One prompt in one `generate` call, its tokens fed to `streamer`; stops at the next token once
        `cancel` is set."""
        import torch
        from transformers import StoppingCriteriaList

        model, tokenizer = self._load()
        input_ids, attention_mask = self._padded([ids])
        stopping = StoppingCriteriaList([_StopStrings(tokenizer, params.stop, len(ids))] if params.stop else [])
        stopping.append(lambda ids, scores, **kwargs: torch.full((ids.shape[0],), cancel.is_set(), device=ids.device))
        if params.temperature > 0:
            torch.manual_seed(params.seed)
        with torch.inference_mode(), self._autocast():
            model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                streamer=streamer,
                stopping_criteria=stopping,
                generation_config=self._generation_config(params, params.max_new_tokens),
            )

    def stream_text(self, request: GenerationRequest) -> Iterator[str]:
        """Text pieces as the model writes them (chat); stop strings are applied to what is shown."""
        from transformers import TextIteratorStreamer

        with self._lock:
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            ids = encode_request(self.tokenizer, request)
            failure: list[BaseException] = []
            cancel = threading.Event()

            def work() -> None:
                try:
                    self._stream_one(ids, request.params, streamer, cancel)
                except BaseException as exc:  # surfaced in the caller's thread below
                    failure.append(exc)
                    streamer.end()

            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            try:
                yield from stream_until_stop(streamer, request.params.stop)
            finally:  # also when the caller stops reading (Ctrl-C, a closed generator): end the model's work
                cancel.set()
                thread.join()
            if failure:
                raise failure[0]
