"""Response refinement: an LLM rewrites each completion for clarity, structure and tone (paper App. G).

The refiner first notes what to improve, then writes the new response after a fixed marker; we
keep only the text after the marker. When the marker is missing or the answer was cut off, the
original completion stays, so a weak refiner can never empty or truncate the training data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from rtune.data.records import Record
from rtune.generation.base import DecodingParams, GenerationRequest, GenerationResult, in_request_order, stream_results

MARKER = "Refined response:"

REFINE_PROMPT = """You are editing a reply that an AI assistant wrote to a user. Make it read better without changing what it says.

Improve three things:
- Clarity: plain, direct wording; no filler; every sentence easy to follow.
- Structure: a logical order, with paragraphs or lists where they help the reader.
- Tone: friendly, natural and engaging, like a knowledgeable person talking to the user.

Keep every fact, step, example and piece of code from the original reply and add no new claims. If the original declines the request, the edited reply declines too, politely.

Work in two steps:
1. In a few sentences, say what could be improved.
2. Then write a line that starts with "Refined response:" followed by the complete edited reply. Write nothing after the edited reply.

=== User request ===
{instruction}
=== End of user request ===

=== Assistant reply ===
{response}
=== End of assistant reply ==="""

_MARKER_PATTERN = re.compile(re.escape(MARKER), re.IGNORECASE)


def refine_request(record: Record, params: DecodingParams) -> GenerationRequest:
    """One user turn for the refiner's own chat template; placeholders filled by replacement (texts hold braces)."""
    content = REFINE_PROMPT.replace("{instruction}", record.prompt).replace("{response}", record.completion)
    return GenerationRequest(messages=({"role": "user", "content": content},), params=params)


def extract_refined(text: str) -> str | None:
    """Everything after the first marker (any case), stripped; None when there is no marker or nothing after it."""
    match = _MARKER_PATTERN.search(text)
    if match is None:
        return None
    refined = text[match.end():].strip()
    return refined or None


@dataclass
class RefineReport:
    records: list[Record]
    extracted: int = 0
    no_marker: list[str] = field(default_factory=list)  # ids kept original: the refiner wrote no marker
    cut_off: list[str] = field(default_factory=list)  # ids kept original: the answer hit max_new_tokens
    changed: int = 0

    @property
    def extraction_rate(self) -> float:
        return self.extracted / len(self.records) if self.records else 0.0


def apply_refinement(record: Record, result: GenerationResult, refiner: str, report: RefineReport) -> Record:
    refined = extract_refined(result.text) if result.finish_reason == "stop" else None
    if result.finish_reason != "stop":
        report.cut_off.append(record.id)
    elif refined is None:
        report.no_marker.append(record.id)
    else:
        report.extracted += 1
        report.changed += refined != record.completion
    meta = {**record.meta, "source_completion": record.completion, "refined_by": refiner, "refined": refined is not None}
    return record.model_copy(update={"completion": refined if refined is not None else record.completion, "meta": meta})


def apply_results(records: list[Record], results: list[GenerationResult], refiner: str) -> RefineReport:
    report = RefineReport(records=[])
    report.records = [apply_refinement(record, result, refiner, report) for record, result in zip(records, results)]
    return report


def refine_records(records: list[Record], generator, refiner: str, params: DecodingParams) -> RefineReport:
    """Refine every record through `generator` (cached and resumable when it is a CachedGenerator)."""
    requests = [refine_request(record, params) for record in records]
    return apply_results(records, in_request_order(stream_results(generator, requests), len(requests)), refiner)
