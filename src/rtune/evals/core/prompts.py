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

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from rtune.evals.choice_scorer import ScoreRequest
from rtune.evals.core.tasks import MCItem
from rtune.prompting import chat_text

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"


@dataclass(frozen=True)
class PromptStyle:
    chat: bool
    render: Callable[[list[dict]], str] | None = None  # messages -> text ending with the generation prompt


def prompt_style(tokenizer, chat: bool | None) -> PromptStyle:
    """Chat when asked, or (chat=None) when the tokenizer has a chat template.

    Messages are rendered by `rtune.prompting.chat_text` (Tulu's template for a model without one),
    as the generation engine renders them, so scoring and generation see the same prompts.
    """
    if chat is None:
        chat = bool(getattr(tokenizer, "chat_template", None))
    return PromptStyle(True, partial(chat_text, tokenizer)) if chat else PromptStyle(False)


def mc_request(item: MCItem, shots: list[MCItem], description: str, style: PromptStyle) -> ScoreRequest:
    if not style.chat:
        examples = "".join(shot.text + TARGET_DELIMITER + shot.answer + FEWSHOT_DELIMITER for shot in shots)
        return ScoreRequest(description + examples + item.text, tuple(TARGET_DELIMITER + c for c in item.choices))
    messages = [{"role": "system", "content": description}] if description else []
    for shot in shots:
        messages += [{"role": "user", "content": shot.text}, {"role": "assistant", "content": shot.answer}]
    messages.append({"role": "user", "content": item.text})
    return ScoreRequest(style.render(messages), item.choices)
