"""Context and continuations of a multiple-choice item, plain or wrapped in the model's chat template.

Plain (lm-eval without --apply_chat_template):
    context = description + Σ(shot.text + " " + shot.answer + "\\n\\n") + item.text
    continuations = " " + choice

Chat (lm-eval --apply_chat_template --fewshot_as_multiturn): the description becomes a system
turn, each shot a user turn and an assistant turn, the item the last user turn; the template's
generation prompt ends the context and each choice follows it directly (lm-eval drops the target
delimiter in chat mode). For our tuned models (and any model without a template) the template is
Tulu's, so the context ends with `<|user|>\\n{question}\\n<|assistant|>\\n`, the inference prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rtune.errors import RtuneError
from rtune.evals.core_tasks import MCItem
from rtune.evals.loglikelihood import ScoreRequest
from rtune.generation.base import GenerationRequest
from rtune.generation.prompting import render_text

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"


@dataclass(frozen=True)
class PromptStyle:
    chat: bool
    render: Callable[[list[dict]], str] | None = None  # messages -> text ending with the generation prompt


def prompt_style(tokenizer, chat: bool | None) -> PromptStyle:
    """Chat when asked, or (chat=None) when the tokenizer has a chat template.

    A model without a template is rendered with Tulu's, exactly as the generation engine does, so
    scoring and generation see the same prompts.
    """
    if chat is None:
        chat = bool(getattr(tokenizer, "chat_template", None))
    if not chat:
        return PromptStyle(False)

    def render(messages: list[dict]) -> str:
        try:
            return render_text(tokenizer, GenerationRequest(messages=tuple(messages)))
        except Exception as exc:  # Jinja raises its own types, e.g. for a template without a system turn
            raise RtuneError(f"the chat template failed on a {len(messages)}-turn conversation ({type(exc).__name__}: {exc})") from exc

    return PromptStyle(True, render)


def mc_request(item: MCItem, shots: list[MCItem], description: str, style: PromptStyle) -> ScoreRequest:
    if not style.chat:
        examples = "".join(shot.text + TARGET_DELIMITER + shot.answer + FEWSHOT_DELIMITER for shot in shots)
        return ScoreRequest(description + examples + item.text, tuple(TARGET_DELIMITER + c for c in item.choices))
    messages = [{"role": "system", "content": description}] if description else []
    for shot in shots:
        messages += [{"role": "user", "content": shot.text}, {"role": "assistant", "content": shot.answer}]
    messages.append({"role": "user", "content": item.text})
    return ScoreRequest(style.render(messages), item.choices)
