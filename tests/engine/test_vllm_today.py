"""Today's vLLM (issue 18, item 5): Model Runner V2 refusing the n-gram processors, and vLLM 0.19.x
answering DeepSeek-OCR with gibberish, recognised in the log, by the local engine and the doctor.

The refusal's text is exactly what vLLM's Model Runner V2 loader raises
(vllm/v1/worker/gpu/sample/logits_processor/loader.py, vLLM PR 56497: "{name} is not a subclass
of vllm.v1.worker.gpu.sample.logits_processor.LogitsProcessor", and for an entry-point plugin
"LogitsProcessor plugin {name} is not a subclass of ...; V1-interface plugins are not supported by
the V2 model runner."); the lines around it are vLLM's engine-core failure as tests/engine/
test_vllm_log.py has it from a real log.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ocrdesk.engine.doctor import check_vllm
from ocrdesk.engine.errors import EngineStartError
from ocrdesk.engine.local_server import LocalServer, LocalServerConfig
from ocrdesk.engine.tasks import FAMILIES, VLLM_RANGE, ModelFamily
from ocrdesk.engine.vllm_log import (
    V2_RUNNER_ENV,
    classify_failure,
    fix_environment,
    known_failure,
    release_problem,
    vllm_version_in,
)

REPO = Path(__file__).resolve().parents[2]
FAKE_VLLM = REPO / "tests" / "fakes" / "vllm"
OCR = FAMILIES[ModelFamily.DEEPSEEK_OCR].hub_id
OCR2 = FAMILIES[ModelFamily.DEEPSEEK_OCR_2].hub_id

_CORE = "(EngineCore_DP0 pid=3107) ERROR 12-03 14:02:11 [core.py:1012]"
_SITE = "/venv/lib/python3.12/site-packages/vllm"
_SUBCLASS = "is not a subclass of vllm.v1.worker.gpu.sample.logits_processor.LogitsProcessor"


def refusal_log(error: str) -> str:
    """vLLM's engine core failing to start on `error` (the loader's ValueError line)."""
    return "\n".join(
        [
            f"{_CORE} EngineCore failed to start.",
            f"{_CORE} Traceback (most recent call last):",
            f'{_CORE}   File "{_SITE}/v1/engine/core.py", line 1003, in run_engine_core',
            f'{_CORE}   File "{_SITE}/v1/worker/gpu/model_runner.py", line 452, in load_model',
            f'{_CORE}   File "{_SITE}/v1/worker/gpu/sample/logits_processor/loader.py", line 103, '
            "in _load_v2_logitsprocs_by_fqcns",
            f"{_CORE}     raise ValueError(",
            f"{_CORE} {error}",
            "(APIServer pid=3050) RuntimeError: Engine core initialization failed. See root cause "
            "above. Failed core proc(s): {}",
        ]
    )


REFUSALS = [
    # OCRDesk's batch processor, the recipe's, and an entry-point plugin
    (f"ValueError: NGramBatchLogitsProcessor {_SUBCLASS}", "NGramBatchLogitsProcessor"),
    (f"ValueError: NGramPerReqLogitsProcessor {_SUBCLASS}", "NGramPerReqLogitsProcessor"),
    (
        f"ValueError: LogitsProcessor plugin ocrdesk_ngram {_SUBCLASS}; V1-interface plugins are "
        "not supported by the V2 model runner.",
        "ocrdesk_ngram",
    ),
]


@pytest.mark.parametrize(("error", "name"), REFUSALS)
def test_model_runner_v2_refusing_a_v1_processor_is_recognised_with_its_fix(
    error: str, name: str
) -> None:
    log = refusal_log(error)
    reason, fix = classify_failure(log, 1)
    assert known_failure(log, 1) == (reason, fix)
    assert "Model Runner V2" in reason and f"refuses the logits processor {name}:" in reason
    assert f"{V2_RUNNER_ENV}=0" in fix
    # The recipe's processor is no way out: it is written for the V1 runner as well.
    assert "OCRDESK_NGRAM_PROCESSOR=recipe does not help" in fix
    assert fix_environment(log, 1) == {V2_RUNNER_ENV: "0"}


def test_fix_environment_only_where_the_fix_is_a_variable() -> None:
    flashinfer = refusal_log("ModuleNotFoundError: No module named 'flashinfer'")
    assert fix_environment(flashinfer, 1) == {"VLLM_USE_FLASHINFER_SAMPLER": "0"}
    assert fix_environment(refusal_log("torch.OutOfMemoryError: CUDA out of memory"), 1) == {}
    assert fix_environment("INFO nothing went wrong", 0) == {}


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalServerConfig:
    # The fake's `#!/usr/bin/env python3` must find this interpreter (it has the fake's deps).
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("OCRDESK_VLLM", raising=False)
    for name in [name for name in os.environ if name.startswith("FAKE_VLLM_")]:
        monkeypatch.delenv(name)
    return LocalServerConfig(
        vllm=str(FAKE_VLLM),
        env={"FAKE_VLLM_STATE_DIR": str(tmp_path)},
        log_dir=tmp_path / "logs",
        start_timeout=30.0,
        stop_timeout=5.0,
    )


async def test_the_local_engine_says_why_a_newer_vllm_refused_to_start(
    config: LocalServerConfig,
) -> None:
    config.env["FAKE_VLLM_CRASH_AT_START"] = refusal_log(REFUSALS[0][0])
    with pytest.raises(EngineStartError) as caught:
        await LocalServer(config).start()
    error = caught.value
    assert "refuses the logits processor NGramBatchLogitsProcessor" in error.reason
    assert f"{V2_RUNNER_ENV}=0" in error.fix
    assert _SUBCLASS in error.log_tail


# -- vLLM 0.19.x ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "version"),
    [
        (
            "(APIServer pid=12227) INFO 11-20 08:54:50 [api_server.py:1978] vLLM API server "
            "version 0.11.2.dev26+g3d4e7d34b",
            "0.11.2.dev26+g3d4e7d34b",
        ),
        (
            "(EngineCore_DP0 pid=12343) INFO 11-20 08:55:03 [core.py:93] Initializing a V1 LLM "
            "engine (v0.19.0) with config: model='deepseek-ai/DeepSeek-OCR'",
            "0.19.0",
        ),
        # The stand-in vllm's own line (tests/fakes/fake_vllm.py, FAKE_VLLM_VERSION=0.19.1).
        (
            "(APIServer pid=7) INFO 12-03 10:00:00 [api_server.py:1] vLLM API server version "
            "0.19.1 (fake)",
            "0.19.1",
        ),
        ("(APIServer pid=7) INFO 12-03 10:00:00 [loader.py:1] Loading weights took 1.5 s", None),
    ],
)
def test_the_release_is_read_from_the_start_up_lines(line: str, version: str | None) -> None:
    assert vllm_version_in(line) == version


@pytest.mark.parametrize("version", ["0.19.0", "0.19.1", "0.19.2rc1.dev5+gabc"])
def test_vllm_0_19_is_known_to_answer_deepseek_ocr_with_gibberish(version: str) -> None:
    problem = release_problem(version, OCR)
    assert problem is not None
    reason, fix = problem
    assert reason.startswith(f"vLLM {version} ") and "gibberish" in reason and "39919" in reason
    assert "vllm>=0.11.1,!=0.19.*,<0.25" in fix
    assert version not in VLLM_RANGE and version not in FAMILIES[ModelFamily.DEEPSEEK_OCR].vllm


@pytest.mark.parametrize("version", ["0.18.1", "0.20.0", "0.24.0", "0.11.1"])
def test_the_releases_around_it_are_not(version: str) -> None:
    assert release_problem(version, OCR) is None
    assert version in VLLM_RANGE


def test_the_report_is_of_deepseek_ocr_alone() -> None:
    # vLLM issue 39919 is DeepSeek-OCR's; nothing is known of DeepSeek-OCR-2 on 0.19.
    assert release_problem("0.19.0", OCR2) is None
    assert VLLM_RANGE.requirement == ">=0.11.1,!=0.19.*,<0.25"


async def test_the_doctor_fails_vllm_0_19_and_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_VLLM_VERSION", "0.19.0")
    found, version = await check_vllm(str(FAKE_VLLM), OCR)
    assert found.ok and not version.ok and version.required
    assert "0.19.0 answers DeepSeek-OCR with gibberish" in version.detail
    assert "pip install 'vllm>=0.11.1,!=0.19.*,<0.25'" in version.fix

    monkeypatch.setenv("FAKE_VLLM_VERSION", "0.33.0")
    found, version = await check_vllm(str(FAKE_VLLM), OCR)
    assert version.ok and "newer than the newest tried here" in version.detail
    assert f"{V2_RUNNER_ENV}=0" in version.detail


# -- what the local engine does about them ---------------------------------------------------------


def test_the_local_engine_keeps_vllm_on_the_runner_that_takes_its_processor(
    config: LocalServerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocrdesk.engine.local_server import server_env
    from ocrdesk.engine.tasks import NGramProcessor

    monkeypatch.delenv(V2_RUNNER_ENV, raising=False)
    assert server_env(config)[V2_RUNNER_ENV] == "0"
    assert server_env(replace(config, ngram_processor=NGramProcessor.RECIPE))[V2_RUNNER_ENV] == "0"
    assert V2_RUNNER_ENV not in server_env(replace(config, ngram_processor=NGramProcessor.NONE))
    monkeypatch.setenv(V2_RUNNER_ENV, "1")  # a person's own choice stays
    assert server_env(config)[V2_RUNNER_ENV] == "1"


async def test_the_local_engine_refuses_a_vllm_release_that_reads_deepseek_ocr_wrong(
    config: LocalServerConfig,
) -> None:
    config.env["FAKE_VLLM_VERSION"] = "0.19.1"
    config.env["FAKE_VLLM_START_DELAY"] = "3"
    server = LocalServer(replace(config, model=OCR))
    with pytest.raises(EngineStartError) as caught:
        await server.start()
    assert "0.19.1" in caught.value.reason and "!=0.19.*" in caught.value.fix
    assert server.last_failure is not None
    config.env["FAKE_VLLM_VERSION"] = "0.24.0"  # a release known to serve it starts
    good = LocalServer(replace(config, model=OCR))
    try:
        await good.start()
    finally:
        await good.stop()
