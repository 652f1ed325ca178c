"""How an instruction becomes model input, for every command that prompts a model.

`rtune generate`, `rtune run`, the safety, core and instructability evaluations all build their
requests here, so the same model and instruction always give the same bytes. Formats:

- `chat`: one user turn in the model's own chat template, Tulu's when it has none (the backend
  applies it; an OpenAI-compatible server applies its own). Our trained models carry the Tulu
  template, so for them `chat` and `tulu` are the same text.
- `tulu`: the paper's inference prompt `<|user|>\\n{instruction}\\n<|assistant|>\\n` as raw text, for any model.
- `plain`: the instruction as raw text.
- URIAL (`urial`, `urial_r`, `0shot`, or a prompt file with an `{instruction}` slot): raw text with
  the instruction in the slot, URIAL's stop strings, and the closing fence cleaned off the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rtune.errors import RtuneError
from rtune.generation.base import DecodingParams, GenerationRequest
from rtune.prompting import urial
from rtune.templates import TULU_CHAT_TEMPLATE, inference_prompt

FORMATS = ("chat", "tulu", "plain")


@dataclass(frozen=True)
class PromptFormat:
    kind: Literal["chat", "tulu", "plain", "urial"]
    name: str  # what the user named: a format, a URIAL mode or a prompt file
    template: str | None = None  # the URIAL prompt text

    def request(self, instruction: str, params: DecodingParams = DecodingParams()) -> GenerationRequest:
        if self.kind == "chat":
            return GenerationRequest(messages=({"role": "user", "content": instruction},), params=params)
        if self.kind == "urial":
            stop = tuple(dict.fromkeys(params.stop + urial.URIAL_STOP))
            return GenerationRequest(
                prompt=urial.render(self.template, instruction), params=params.model_copy(update={"stop": stop})
            )
        return GenerationRequest(
            prompt=inference_prompt(instruction) if self.kind == "tulu" else instruction, params=params
        )

    def clean(self, text: str) -> str:
        """The answer as it goes into an outputs file."""
        return urial.clean_output(text) if self.kind == "urial" else text.strip()

    def text(self, instruction: str, tokenizer) -> str:
        """The exact prompt text a local model reads (what the likelihood metric conditions on)."""
        request = self.request(instruction)
        return request.prompt if request.prompt is not None else chat_text(tokenizer, request.messages)

    def identity(self) -> dict:
        """What decides the prompts, for cache keys: the format and, for URIAL, the prompt text itself."""
        return {"format": self.kind, "template": self.template}


def parse_format(spec: str) -> PromptFormat:
    """`chat`, `tulu`, `plain`, a URIAL mode (`urial`, `urial_r`, `0shot`) or a URIAL-format prompt file."""
    if spec in FORMATS:
        return PromptFormat(spec, spec)  # type: ignore[arg-type]
    try:
        return PromptFormat("urial", spec, urial.load_template(spec))
    except RtuneError as exc:
        raise RtuneError(
            f"prompt format '{spec}': not one of {', '.join(FORMATS + urial.URIAL_MODES)} "
            f"and not a URIAL prompt file ({exc})"
        ) from exc


def chat_text(tokenizer, messages) -> str:
    """Messages through the model's chat template (Tulu's when it has none), ending with the generation prompt."""
    template = None if tokenizer.chat_template else TULU_CHAT_TEMPLATE
    try:
        return tokenizer.apply_chat_template(
            list(messages), chat_template=template, add_generation_prompt=True, tokenize=False
        )
    except Exception as exc:  # Jinja raises its own types, e.g. for a template without a system turn
        raise RtuneError(
            f"the chat template failed on a {len(messages)}-turn conversation ({type(exc).__name__}: {exc})"
        ) from exc
