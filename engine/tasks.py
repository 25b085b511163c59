"""What the model is asked to do: the trained prompts per model family, and the request they make.

DeepSeek-OCR and DeepSeek-OCR-2 were trained on a handful of fixed prompts. Through vLLM's
OpenAI-compatible server the `<image>` placeholder is not written into the text: the chat message
carries the image part first and the prompt text after it, and the server's DeepSeek-OCR processor
puts the image tokens in place (this is what vLLM's DeepSeek-OCR recipe sends). For a raw
completion (a server without a chat template) `prompt_text(..., with_image_tag=True)` gives the
literal form `<image>\\n...`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ModelFamily(str, Enum):
    """The model families OCRDesk knows the prompts of."""

    DEEPSEEK_OCR = "deepseek-ocr"
    DEEPSEEK_OCR_2 = "deepseek-ocr-2"

    @classmethod
    def from_model_name(cls, name: str) -> ModelFamily:
        """Guess the family from a hub id or a folder name ("...OCR-2..." means OCR-2)."""
        lowered = name.lower().replace("_", "-")
        return cls.DEEPSEEK_OCR_2 if "ocr-2" in lowered or "ocr2" in lowered else cls.DEEPSEEK_OCR


class Task(str, Enum):
    """The tasks a person picks from."""

    MARKDOWN = "markdown"  # markdown with grounding boxes
    FREE = "free"  # plain text, no boxes
    OCR = "ocr"  # grounded OCR
    FIGURE = "figure"  # parse a figure or chart
    DESCRIBE = "describe"  # describe the image
    LOCATE = "locate"  # find where a given text is
    CUSTOM = "custom"  # any prompt the person writes

    @property
    def grounded(self) -> bool:
        """Whether the output carries `<|ref|>/<|det|>` boxes worth drawing."""
        return self in (Task.MARKDOWN, Task.OCR, Task.LOCATE)


TASK_TITLES: dict[Task, str] = {
    Task.MARKDOWN: "Markdown with boxes",
    Task.FREE: "Free OCR",
    Task.OCR: "Grounded OCR",
    Task.FIGURE: "Figure",
    Task.DESCRIBE: "Describe",
    Task.LOCATE: "Locate…",
    Task.CUSTOM: "Custom prompt",
}

# Both families share these prompts (DeepSeek-OCR-2's README lists the same document and free OCR
# prompts); the table is per family so a future family can differ without touching callers.
_PROMPTS: dict[ModelFamily, dict[Task, str]] = {
    family: {
        Task.MARKDOWN: "<|grounding|>Convert the document to markdown.",
        Task.FREE: "Free OCR.",
        Task.OCR: "<|grounding|>OCR this image.",
        Task.FIGURE: "Parse the figure.",
        Task.DESCRIBE: "Describe this image in detail.",
        Task.LOCATE: "Locate <|ref|>{text}<|/ref|> in the image.",
    }
    for family in ModelFamily
}


def prompt_text(
    task: Task,
    family: ModelFamily = ModelFamily.DEEPSEEK_OCR,
    *,
    custom: str | None = None,
    with_image_tag: bool = False,
) -> str:
    """The prompt for `task`. LOCATE needs the text to find in `custom`; CUSTOM needs the prompt.

    A custom prompt may be written with or without a leading `<image>`: it is removed here and put
    back only when `with_image_tag` asks for the literal form.
    """
    if task is Task.CUSTOM:
        if not custom or not custom.strip():
            raise ValueError("the custom task needs a prompt")
        text = custom.strip()
        text = text.removeprefix("<image>").lstrip("\n")
    elif task is Task.LOCATE:
        if not custom or not custom.strip():
            raise ValueError("the locate task needs the text to find")
        text = _PROMPTS[family][task].format(text=custom.strip())
    else:
        text = _PROMPTS[family][task]
    return f"<image>\n{text}" if with_image_tag else text


@dataclass
class Sampling:
    """Sampling settings sent with each request (all settable; defaults are the model's own).

    The n-gram logits processor (vLLM's NGramPerReqLogitsProcessor) stops the repetition loops
    DeepSeek-OCR falls into; the whitelisted ids 128821/128822 are `<td>` and `</td>`, which
    tables legitimately repeat.
    """

    temperature: float = 0.0
    max_tokens: int = 8192
    ngram_size: int = 30
    window_size: int = 90
    whitelist_token_ids: list[int] = field(default_factory=lambda: [128821, 128822])
    skip_special_tokens: bool = False
    extra_body: dict[str, Any] = field(default_factory=dict)  # e.g. {"ignore_eos": True}

    def vllm_xargs(self) -> dict[str, Any]:
        return {
            "ngram_size": self.ngram_size,
            "window_size": self.window_size,
            "whitelist_token_ids": list(self.whitelist_token_ids),
        }


def build_messages(image_url: str, prompt: str) -> list[dict[str, Any]]:
    """One user message: the page image part first, then the prompt text (no `<image>` tag)."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": prompt},
            ],
        }
    ]
