"""What the model is asked to do, and which model: the tasks, the model families, and the request.

DeepSeek-OCR and DeepSeek-OCR-2 were trained on a handful of fixed prompts. Through vLLM's
OpenAI-compatible server the `<image>` placeholder is not written into the text: the chat message
carries the image part first and the prompt text after it, and the server's DeepSeek-OCR processor
puts the image tokens in place (this is what vLLM's DeepSeek-OCR recipe sends). For a raw
completion (a server without a chat template) `prompt_text(..., with_image_tag=True)` gives the
literal form `<image>\\n...`.

`FAMILIES` is the one registry of model families: each entry holds everything OCRDesk knows of
one family (its prompts, how a served model name is matched, whether vLLM needs
`--trust-remote-code` for it, its served architecture, the vLLM releases known to serve it, and
its server flags). Adding a family is adding one `ModelFamily` member and its entry here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

#: PDF pages are rendered at 144 dpi (2 pixels a point): enough for small print, and the model
#: scales what it is sent to its own working size anyway (engine.images.model_size).
DEFAULT_DPI = 144


class ModelFamily(str, Enum):
    """The model families OCRDesk knows; `spec` is the family's entry in `FAMILIES`."""

    DEEPSEEK_OCR = "deepseek-ocr"
    DEEPSEEK_OCR_2 = "deepseek-ocr-2"

    @classmethod
    def from_model_name(cls, name: str) -> ModelFamily:
        """The family of a served model name, hub id or folder (see `family_of`)."""
        return family_of(name)

    @property
    def spec(self) -> FamilySpec:
        return FAMILIES[self]


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

    @property
    def needs_prompt(self) -> bool:
        """Whether the person must give text with it: the text to locate, or the prompt itself."""
        return self in (Task.LOCATE, Task.CUSTOM)


TASK_TITLES: dict[Task, str] = {
    Task.MARKDOWN: "Markdown with boxes",
    Task.FREE: "Free OCR",
    Task.OCR: "Grounded OCR",
    Task.FIGURE: "Figure",
    Task.DESCRIBE: "Describe",
    Task.LOCATE: "Locate…",
    Task.CUSTOM: "Custom prompt",
}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"[0-9]+", text))


@dataclass(frozen=True)
class VllmRange:
    """The vLLM releases known to serve a family: from `minimum` up to, not including, `below`.

    `newest_tried` is the newest release run on the project's GPU machine (shared/gpu/RESULTS.md);
    `below` is the first release not yet tried. `broken`: the releases in between known to fail
    the family, each as (release, why): "0.19" is every 0.19.x.
    """

    minimum: str
    below: str
    newest_tried: str
    broken: tuple[tuple[str, str], ...] = ()

    @property
    def requirement(self) -> str:
        """The pip version specifier, e.g. ">=0.11.1,!=0.19.*,<0.25" (pyproject's vllm extra)."""
        excluded = "".join(f",!={release}.*" for release, _ in self.broken)
        return f">={self.minimum}{excluded},<{self.below}"

    def broken_why(self, version: str) -> str | None:
        """Why `version` is known to fail the family ("0.19.1" for a broken "0.19"), or None."""
        for release, why in self.broken:
            head = _version(release)
            if _version(version)[: len(head)] == head:
                return why
        return None

    def __contains__(self, version: object) -> bool:
        if not isinstance(version, str):
            return False
        inside = _version(self.minimum) <= _version(version) < _version(self.below)
        return inside and self.broken_why(version) is None


class NGramProcessor(str, Enum):
    """Which n-gram logits processor a vLLM server runs: both stop the repetition loops
    DeepSeek-OCR falls into, with the same rule and the same per-request `vllm_xargs`."""

    #: OCRDesk's engine/ngram_logits.py: the whole batch at once on tensors (vLLM V1's
    #: batch-level interface). The local engine puts a copy of it on vLLM's PYTHONPATH.
    BATCH = "batch"
    #: vLLM's own, the recipe's (its module came in vLLM 0.11.1): Python per request per step.
    RECIPE = "recipe"
    #: None: for measuring what a processor costs. A loop then runs on until the client's
    #: triage cuts it (engine/triage.py) or max_tokens.
    NONE = "none"

    @property
    def qualified_name(self) -> str | None:
        """What `--logits-processors` names (`module:Class`); None for NONE."""
        return _PROCESSOR_NAMES.get(self)


#: The module name engine/ngram_logits.py has in the vLLM process (a file of that name in a
#: folder on its PYTHONPATH: the rest of OCRDesk is not importable there, nor needed).
BATCH_PROCESSOR_MODULE = "ocrdesk_ngram_logits"
BATCH_LOGITS_PROCESSOR = f"{BATCH_PROCESSOR_MODULE}:NGramBatchLogitsProcessor"
RECIPE_LOGITS_PROCESSOR = "vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor"
_PROCESSOR_NAMES = {
    NGramProcessor.BATCH: BATCH_LOGITS_PROCESSOR,
    NGramProcessor.RECIPE: RECIPE_LOGITS_PROCESSOR,
}
#: The processor a local server runs unless told otherwise.
DEFAULT_NGRAM_PROCESSOR = NGramProcessor.BATCH
LOGITS_PROCESSOR = BATCH_LOGITS_PROCESSOR
_PROCESSOR_FLAG = "--logits_processors"
#: The flags of `vllm serve` the model's guides give: the logits processor (OCRDesk's by
#: default; `FamilySpec.flags` names the other), and no prefix or multimodal processor caching
#: (every page image is new).
SERVER_FLAGS: tuple[str, ...] = (
    _PROCESSOR_FLAG,
    LOGITS_PROCESSOR,
    "--no-enable-prefix-caching",
    "--mm-processor-cache-gb",
    "0",
)
_VLLM_BELOW = "0.25"  # the first release not tried yet
_VLLM_NEWEST_TRIED = "0.24"  # on the project's H100, shared/gpu/RESULTS.md
# vLLM issue 39919 (open): 0.19.0 answers DeepSeek-OCR pages with text unrelated to the page; the
# reporter's 0.16-0.18 read the same pages right.
_VLLM_BROKEN = (("0.19", "answers DeepSeek-OCR with gibberish (vLLM issue 39919)"),)

# The trained prompts (DeepSeek-OCR-2's README lists the same document and free OCR prompts).
# CUSTOM has none: the person writes it. LOCATE's `{text}` is the text to find.
_DEEPSEEK_PROMPTS: Mapping[Task, str] = MappingProxyType(
    {
        Task.MARKDOWN: "<|grounding|>Convert the document to markdown.",
        Task.FREE: "Free OCR.",
        Task.OCR: "<|grounding|>OCR this image.",
        Task.FIGURE: "Parse the figure.",
        Task.DESCRIBE: "Describe this image in detail.",
        Task.LOCATE: "Locate <|ref|>{text}<|/ref|> in the image.",
    }
)


@dataclass(frozen=True)
class FamilySpec:
    """Everything OCRDesk knows of one model family."""

    family: ModelFamily
    title: str  # what a person reads: "DeepSeek-OCR-2"
    hub_id: str  # the model on the Hugging Face hub
    #: Searched in a served model name, hub id or folder path (see `known_family`).
    name_pattern: re.Pattern[str]
    architecture: str  # as in the model's config.json "architectures" and vLLM's log
    #: Whether vLLM needs `--trust-remote-code` (the hub model's config maps custom code).
    trust_remote_code: bool
    vllm: VllmRange
    prompts: Mapping[Task, str]
    server_flags: tuple[str, ...] = field(default=SERVER_FLAGS)

    def prompt(self, task: Task) -> str:
        """The trained prompt of `task` (KeyError for CUSTOM, which has none)."""
        return self.prompts[task]

    def flags(self, processor: NGramProcessor = DEFAULT_NGRAM_PROCESSOR) -> tuple[str, ...]:
        """The server flags with `processor` as the n-gram logits processor (none for NONE)."""
        flags = list(self.server_flags)
        if _PROCESSOR_FLAG in flags[:-1]:
            at = flags.index(_PROCESSOR_FLAG)
            name = processor.qualified_name
            flags[at : at + 2] = [_PROCESSOR_FLAG, name] if name else []
        return tuple(flags)


#: The registry, in the order a person is offered the families.
FAMILIES: Mapping[ModelFamily, FamilySpec] = MappingProxyType(
    {
        ModelFamily.DEEPSEEK_OCR: FamilySpec(
            family=ModelFamily.DEEPSEEK_OCR,
            title="DeepSeek-OCR",
            hub_id="deepseek-ai/DeepSeek-OCR",
            name_pattern=re.compile(r"ocr", re.IGNORECASE),
            architecture="DeepseekOCRForCausalLM",
            trust_remote_code=False,  # vLLM has a native implementation
            # 0.11.1: the first release with vllm.model_executor.models.deepseek_ocr.
            vllm=VllmRange("0.11.1", _VLLM_BELOW, _VLLM_NEWEST_TRIED, _VLLM_BROKEN),
            prompts=_DEEPSEEK_PROMPTS,
        ),
        ModelFamily.DEEPSEEK_OCR_2: FamilySpec(
            family=ModelFamily.DEEPSEEK_OCR_2,
            title="DeepSeek-OCR-2",
            hub_id="deepseek-ai/DeepSeek-OCR-2",
            name_pattern=re.compile(r"ocr[-_]?2", re.IGNORECASE),
            architecture="DeepseekOCR2ForCausalLM",
            trust_remote_code=True,
            # DeepseekOCR2ForCausalLM came to upstream vLLM in the 0.15/0.16 nightly period
            # (early 2026); 0.16.0 is the first release known to have it.
            vllm=VllmRange("0.16.0", _VLLM_BELOW, _VLLM_NEWEST_TRIED),
            prompts=_DEEPSEEK_PROMPTS,
        ),
    }
)
DEFAULT_FAMILY = ModelFamily.DEEPSEEK_OCR
#: The model a local server runs unless told otherwise.
DEFAULT_MODEL = FAMILIES[DEFAULT_FAMILY].hub_id
#: The vLLM releases known to serve every family: pyproject's `vllm` extra (a test checks it).
VLLM_RANGE = VllmRange(
    minimum=min((spec.vllm.minimum for spec in FAMILIES.values()), key=_version),
    below=_VLLM_BELOW,
    newest_tried=_VLLM_NEWEST_TRIED,
    broken=_VLLM_BROKEN,
)


def known_family(name: str) -> ModelFamily | None:
    """The family whose name pattern a served model name, hub id or folder path matches.

    The default family's pattern is the loosest ("ocr"), so any other family that matches wins
    over it ("DeepSeek-OCR-2" matches both); None when no family matches.
    """
    matched = [family for family, spec in FAMILIES.items() if spec.name_pattern.search(name)]
    specific = [family for family in matched if family is not DEFAULT_FAMILY]
    found = specific or matched
    return found[0] if found else None


def family_of(name: str) -> ModelFamily:
    """The family of a served model name, hub id or folder path (`DEFAULT_FAMILY` if none)."""
    return known_family(name) or DEFAULT_FAMILY


def family_by_architecture(architectures: Iterable[object]) -> ModelFamily | None:
    """The family whose served architecture is among `architectures` (config.json), if any."""
    names = {str(name).lower() for name in architectures}
    for family, spec in FAMILIES.items():
        if spec.architecture.lower() in names:
            return family
    return None


def prompt_text(
    task: Task,
    family: ModelFamily = DEFAULT_FAMILY,
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
        text = FAMILIES[family].prompt(task).format(text=custom.strip())
    else:
        text = FAMILIES[family].prompt(task)
    return f"<image>\n{text}" if with_image_tag else text


@dataclass
class Sampling:
    """Sampling settings sent with each request (all settable; defaults are the model's own).

    The n-gram logits processor (`NGramProcessor`: OCRDesk's batch one or vLLM's
    NGramPerReqLogitsProcessor, which read the same `vllm_xargs`) stops the repetition loops
    DeepSeek-OCR falls into; the whitelisted ids 128821/128822 are `<td>` and `</td>`, which
    tables legitimately repeat.
    """

    temperature: float = 0.0
    max_tokens: int = 8192
    ngram_size: int = 30
    window_size: int = 90
    whitelist_token_ids: list[int] = field(default_factory=lambda: [128821, 128822])
    skip_special_tokens: bool = False
    # Ask for each token's log-probability (`logprobs`, `top_logprobs: 0`): blocks get a
    # confidence and pages the `low_confidence` flag (engine/triage.py). Off by default (CLI
    # --confidence turns it on): the client ceiling (benchmarks/bench_client.py --logprobs, 100
    # pages, 3 rounds alternated on a loaded 2-core machine) went from 3.3 to 3.0 pages/s (0.89x;
    # rounds 0.75x to 1.0x), and on the GPU vLLM's API server, whose CPU already sets the pace
    # there (shared/gpu/RESULTS.md), would serialize one more field per token: not measured yet.
    logprobs: bool = False
    extra_body: dict[str, Any] = field(default_factory=dict)  # e.g. {"ignore_eos": True}

    def vllm_xargs(self) -> dict[str, Any]:
        # The keys both processors read (engine/ngram_logits.py names them too; a test keeps
        # the two equal, as that module cannot import this one in the vLLM process).
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
