"""Response refinement: an LLM rewrites each completion for clarity, structure and tone (paper App. G).

The refiner first notes what to improve, then writes the new response after a fixed marker; we
keep the text after the first marker (any case), stripped, as the paper's script does. When the
marker is missing, nothing follows it, or the answer was cut off, the original completion stays, so
a weak refiner can never empty or truncate the training data. The prompt is our own (it adds a
"keep every fact" clause), or a file in the paper's syntax (`{user_request}`, `{response}`, filled
with `str.format` after `.strip()`): the paper's own text, for one. Defaults are the paper's: greedy,
8,192 new tokens, one user turn in the refiner's chat template; the extraction rate is the paper's
too (the share of completions that changed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ConfigDict, Field

from rtune.data.records import Record
from rtune.generation.base import DecodingParams, GenerationRequest, GenerationResult
from rtune.generation.hf import DEFAULT_BATCH_SIZE
from rtune.generation.openai_compat import RetrySettings
from rtune.progress import SILENT, Progress
from rtune.prompting.files import PromptFile, load_prompt_file

MARKER = "Refined response:"
PROMPT_FIELDS = ("user_request", "response")  # the paper's placeholders
PAPER_MAX_NEW_TOKENS = 8192

REFINE_PROMPT = """You are editing a reply that an AI assistant wrote to a user. \
Make it read better without changing what it says.

Improve three things:
- Clarity: plain, direct wording; no filler; every sentence easy to follow.
- Structure: a logical order, with paragraphs or lists where they help the reader.
- Tone: friendly, natural and engaging, like a knowledgeable person talking to the user.

Keep every fact, step, example and piece of code from the original reply and add no new claims. \
If the original declines the request, the edited reply declines too, politely.

Work in two steps:
1. In a few sentences, say what could be improved.
2. Then write a line that starts with "Refined response:" followed by the complete edited reply. \
Write nothing after the edited reply.

=== User request ===
{instruction}
=== End of user request ===

=== Assistant reply ===
{response}
=== End of assistant reply ==="""

_MARKER_PATTERN = re.compile(re.escape(MARKER), re.IGNORECASE)


def load_refine_prompt(path: str | Path) -> PromptFile:
    return load_prompt_file(path, "format", PROMPT_FIELDS, "--prompt-file")


def refine_request(record: Record, params: DecodingParams, prompt: PromptFile | None = None) -> GenerationRequest:
    """One user turn for the refiner's own chat template: our prompt (filled by replacement, so texts may hold
    braces), or a prompt file filled as the paper fills its own."""
    if prompt is None:
        content = REFINE_PROMPT.replace("{instruction}", record.prompt).replace("{response}", record.completion)
    else:
        content = prompt.fill(user_request=record.prompt, response=record.completion)
    return GenerationRequest(messages=({"role": "user", "content": content},), params=params)


def extract_refined(text: str) -> str | None:
    """Everything after the first marker (any case), stripped; None when there is no marker or nothing after it."""
    match = _MARKER_PATTERN.search(text)
    if match is None:
        return None
    refined = text[match.end() :].strip()
    return refined or None


@dataclass
class RefineReport:
    records: list[Record]
    extracted: int = 0
    no_marker: list[str] = field(default_factory=list)  # ids kept original: the refiner wrote no marker
    cut_off: list[str] = field(default_factory=list)  # ids kept original: the answer hit max_new_tokens
    changed: int = 0
    generated: int = 0  # refiner answers produced in this run
    from_cache: int = 0

    @property
    def extraction_rate(self) -> float:
        """The paper's: the share of records whose completion changed."""
        return self.changed / len(self.records) if self.records else 0.0


def apply_refinement(record: Record, result: GenerationResult, refiner: str, report: RefineReport) -> Record:
    refined = extract_refined(result.text) if result.finish_reason == "stop" else None
    if result.finish_reason != "stop":
        report.cut_off.append(record.id)
    elif refined is None:
        report.no_marker.append(record.id)
    else:
        report.extracted += 1
        report.changed += refined != record.completion
    meta = {
        **record.meta,
        "source_completion": record.completion,
        "refined_by": refiner,
        "refined": refined is not None,
    }
    return record.model_copy(update={"completion": refined if refined is not None else record.completion, "meta": meta})


def apply_results(records: list[Record], results: list[GenerationResult], refiner: str) -> RefineReport:
    report = RefineReport(records=[])
    report.records = [
        apply_refinement(record, result, refiner, report) for record, result in zip(records, results, strict=False)
    ]
    return report


class RefineSettings(RetrySettings):
    """What `rtune data refine` (and a pipeline refine stage) is asked to do."""

    model_config = ConfigDict(extra="forbid")

    file: Path = Field(description="record JSONL to refine")
    refiner: str = Field(description="hf:MODEL or a bare model spec, vllm:MODEL, openai:MODEL or openai:MODEL@URL")
    out: Path = Field(description="refined record JSONL (originals kept in meta.source_completion)")
    backend: str | None = Field(None, description="hf, vllm or openai (default: from the spec, else hf)")
    base_url: str | None = Field(None, description="OpenAI-compatible server URL (openai backend)")
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key (default OPENAI_API_KEY)"
    )
    batch_size: int = Field(
        DEFAULT_BATCH_SIZE, ge=1, description="prompts per batch (hf); larger is faster while memory lasts"
    )
    concurrency: int = Field(8, ge=1, description="requests in flight (openai)")
    max_new_tokens: int = Field(PAPER_MAX_NEW_TOKENS, ge=1, description="refiner answer budget (the paper's: 8,192)")
    prompt_file: Path | None = Field(
        None,
        description="refiner prompt in the paper's syntax ({user_request}, {response}); default: rtune's own prompt",
    )
    limit: int | None = Field(None, ge=1, description="only the first N records")
    cache: Path | None = Field(None, description="SQLite cache (default: generation_cache.sqlite beside --out)")
    strict: bool = Field(False, description="fail on an empty prompt or completion instead of skipping it")


def run(settings: RefineSettings, progress: Progress = SILENT) -> RefineReport:
    """Refine every record (cached, so a killed run resumes) and write the refined records atomically."""
    from rtune.data.records import read_records, write_records
    from rtune.generation import from_spec, generate_in_order
    from rtune.generation.outputs import default_cache
    from rtune.io import check_output
    from rtune.redact import redact

    s = settings
    check_output(s.out, inputs=[s.file, s.cache, s.prompt_file])
    prompt = load_refine_prompt(s.prompt_file) if s.prompt_file is not None else None
    records = read_records(s.file, strict=s.strict).records[: s.limit]
    generator = from_spec(
        s.refiner,
        backend=s.backend,
        cache=s.cache or default_cache(s.out),
        base_url=s.base_url,
        api_key_env=s.api_key_env,
        batch_size=s.batch_size,
        concurrency=s.concurrency,
        timeout=s.timeout,
        max_retries=s.max_retries,
    )
    params = DecodingParams(max_new_tokens=s.max_new_tokens)
    requests = [refine_request(record, params, prompt) for record in records]
    results = generate_in_order(generator, requests, progress, "refine")
    report = apply_results(records, results, redact(s.refiner))
    report.generated, report.from_cache = generator.misses, generator.hits
    write_records(s.out, report.records)
    return report
