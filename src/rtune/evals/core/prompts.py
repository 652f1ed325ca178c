"""Context and continuations of a multiple-choice item under a protocol: plain or in the model's chat template.

Plain (lm-eval without --apply_chat_template), both protocols:
    context = description + Σ(shot.text + " " + shot.answer + "\\n\\n") + item.text
    continuations = " " + choice

Chat (lm-eval --apply_chat_template --fewshot_as_multiturn): the description is a system turn, each shot a
user turn and an assistant turn, the item the last user turn; the template's generation prompt ends the
context. For our tuned models (and any model without a template) the template is Tulu's, so the context
ends with `<|user|>\n{question}\n<|assistant|>\n`, the inference prompt.

The protocols: `paper` is lm-eval 0.4.4/0.4.5 through its vLLM backend (the paper's scripts/eval/core.sh),
`lm-eval` is lm-eval today (0.4.13, HF backend). They differ in three points:

- after a chat context, each choice follows `" "` under `paper` (lm_eval/api/task.py `construct_requests`,
  v0.4.5) and nothing under `lm-eval` (v0.4.6 made it `""` in chat mode);
- BOS: under `paper` the tokenizer adds its special tokens for Gemma models only, whatever the text holds
  (lm_eval/models/vllm_causallms.py, v0.4.5: `add_bos_token`, forced for "gemma"; a Gemma chat template
  that writes `<bos>` gets two), plain prompts included; under `lm-eval` the tokenizer's own, unless the
  text starts with BOS;
- the system turn (MMLU's description) goes to the template under both, but the paper's Tulu template
  (seokhyunan/response-tuning hf_ft.py) renders none, so under `paper` a Tulu-templated model never sees
  it; ours renders `<|system|>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

from rtune.evals.choice_scorer import ScoreRequest
from rtune.evals.core.tasks import MCItem
from rtune.prompting import chat_text
from rtune.templates import TULU_CHAT_TEMPLATE

Protocol = Literal["paper", "lm-eval"]
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"


@dataclass(frozen=True)
class PromptStyle:
    protocol: Protocol
    chat: bool
    add_special_tokens: bool | None = None  # None: the tokenizer's BOS unless the text starts with it
    drop_system: bool = False  # the template renders no system turn (the paper's Tulu template)
    render: Callable[[list[dict]], str] | None = None  # messages -> text ending with the generation prompt

    @property
    def target_delimiter(self) -> str:
        """What comes between a context and each choice."""
        return "" if self.chat and self.protocol == "lm-eval" else TARGET_DELIMITER

    def chat_text(self, messages: list[dict]) -> str:
        return self.render([m for m in messages if not (self.drop_system and m["role"] == "system")])


def prompt_style(tokenizer, chat: bool | None, protocol: Protocol = "lm-eval", model_type: str = "") -> PromptStyle:
    """Chat when asked, or (chat=None) when the tokenizer has a chat template; the protocol's BOS and system rules.

    Messages are rendered by `rtune.prompting.chat_text` (Tulu's template for a model without one),
    as the generation engine renders them, so scoring and generation see the same prompts.
    `model_type` is the model config's: lm-eval 0.4.5 gave Gemma models a BOS (its vLLM backend by the
    model's path, its HF backend by this type; the paper's paths name the model).
    """
    if chat is None:
        chat = bool(getattr(tokenizer, "chat_template", None))
    render = partial(chat_text, tokenizer) if chat else None
    if protocol == "lm-eval":
        return PromptStyle(protocol, chat, render=render)
    tulu = getattr(tokenizer, "chat_template", None) in (None, "", TULU_CHAT_TEMPLATE)
    return PromptStyle(protocol, chat, "gemma" in model_type.lower(), chat and tulu, render)


def mc_request(item: MCItem, shots: list[MCItem], description: str, style: PromptStyle) -> ScoreRequest:
    continuations = tuple(style.target_delimiter + choice for choice in item.choices)
    if not style.chat:
        examples = "".join(shot.text + TARGET_DELIMITER + shot.answer + FEWSHOT_DELIMITER for shot in shots)
        return ScoreRequest(description + examples + item.text, continuations)
    messages = [{"role": "system", "content": description}] if description else []
    for shot in shots:
        messages += [{"role": "user", "content": shot.text}, {"role": "assistant", "content": shot.answer}]
    messages.append({"role": "user", "content": item.text})
    return ScoreRequest(style.chat_text(messages), continuations)
