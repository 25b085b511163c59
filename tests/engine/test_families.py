"""The model-family registry: one entry per family, the single owner of its prompts, name
matching, server needs and vLLM range; and `Task.needs_prompt`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ocrdesk.engine import tasks
from ocrdesk.engine.tasks import (
    DEFAULT_FAMILY,
    DEFAULT_MODEL,
    FAMILIES,
    LOGITS_PROCESSOR,
    VLLM_RANGE,
    ModelFamily,
    Task,
    VllmRange,
    family_by_architecture,
    family_of,
    known_family,
    prompt_text,
)

ROOT = Path(__file__).resolve().parents[2]


def test_every_family_has_one_complete_entry() -> None:
    assert set(FAMILIES) == set(ModelFamily)
    for family, spec in FAMILIES.items():
        assert spec.family is family and family.spec is spec
        # Every task but CUSTOM (whose prompt the person writes) has a trained prompt.
        assert set(spec.prompts) == set(Task) - {Task.CUSTOM}
        assert family_of(spec.hub_id) is family and family_of(spec.title) is family
        assert family_by_architecture([spec.architecture]) is family
        assert spec.vllm.minimum in spec.vllm and spec.vllm.newest_tried in spec.vllm
        assert spec.vllm.below not in spec.vllm
        assert spec.server_flags[:2] == ("--logits_processors", LOGITS_PROCESSOR)
        assert {"--no-enable-prefix-caching", "--mm-processor-cache-gb"} <= set(spec.server_flags)
    assert FAMILIES[ModelFamily.DEEPSEEK_OCR_2].trust_remote_code
    assert not FAMILIES[ModelFamily.DEEPSEEK_OCR].trust_remote_code
    assert DEFAULT_MODEL == "deepseek-ai/DeepSeek-OCR" == FAMILIES[DEFAULT_FAMILY].hub_id


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("deepseek-ai/DeepSeek-OCR", ModelFamily.DEEPSEEK_OCR),
        ("deepseek-ai/DeepSeek-OCR-2", ModelFamily.DEEPSEEK_OCR_2),
        ("/models/deepseek_ocr2", ModelFamily.DEEPSEEK_OCR_2),
        # vLLM serves a hub model from the cache under a hashed snapshot folder
        (
            "/root/.cache/huggingface/hub/models--deepseek-ai--DeepSeek-OCR-2/snapshots/ab12",
            ModelFamily.DEEPSEEK_OCR_2,
        ),
        ("/srv/ocr/DeepSeek-OCR-2", ModelFamily.DEEPSEEK_OCR_2),
        ("my-finetune", None),
    ],
)
def test_a_served_model_name_is_matched_to_its_family(
    name: str, family: ModelFamily | None
) -> None:
    assert known_family(name) is family
    assert family_of(name) is (family or DEFAULT_FAMILY)
    assert ModelFamily.from_model_name(name) is family_of(name)  # the old name still works


def test_a_config_architecture_names_its_family() -> None:
    # As a local folder's config.json lists them (any case).
    assert family_by_architecture(["deepseekocr2forcausallm"]) is ModelFamily.DEEPSEEK_OCR_2
    assert family_by_architecture(["LlamaForCausalLM"]) is None


def test_the_vllm_range_is_pyprojects_extra_and_covers_every_family() -> None:
    # pyproject cannot import the engine; this keeps its `vllm` extra the engine's range.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (extra,) = re.findall(r'^vllm = \["vllm([^"]*)"\]$', pyproject, re.MULTILINE)
    assert extra == VLLM_RANGE.requirement
    for spec in FAMILIES.values():
        assert spec.vllm.minimum in VLLM_RANGE and spec.vllm.below == VLLM_RANGE.below
    assert VllmRange("0.11.1", "0.25", "0.24").requirement == ">=0.11.1,<0.25"
    assert "0.24.3" in VLLM_RANGE and "0.11.0" not in VLLM_RANGE and "0.25.0" not in VLLM_RANGE


def test_task_knows_whether_it_needs_a_prompt() -> None:
    assert {t for t in Task if t.needs_prompt} == {Task.LOCATE, Task.CUSTOM}
    for task in Task:
        if task.needs_prompt:
            with pytest.raises(ValueError):
                prompt_text(task)
            assert "Grüße" in prompt_text(task, custom="Grüße")
        else:
            assert prompt_text(task) == FAMILIES[DEFAULT_FAMILY].prompts[task]


def test_the_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        tasks.FAMILIES[ModelFamily.DEEPSEEK_OCR] = FAMILIES[ModelFamily.DEEPSEEK_OCR_2]  # type: ignore[index]
