"""vllm_log: status lines from real vLLM progress messages, failures from real error texts."""

from __future__ import annotations

import pytest

from ocrdesk.engine.vllm_log import classify_failure, known_failure, mask_secret, status_from_line

# A real start of `vllm serve deepseek-ai/DeepSeek-OCR` (vLLM 0.11.2 dev, shortened) and the
# status each line should give.
START_LOG = [
    (
        "(APIServer pid=12227) INFO 11-20 08:54:50 [api_server.py:1978] vLLM API server version "
        "0.11.2.dev26+g3d4e7d34b",
        "starting vLLM",
    ),
    (
        "(APIServer pid=12227) INFO 11-20 08:54:50 [utils.py:253] non-default args: "
        "{'model_tag': 'deepseek-ai/DeepSeek-OCR', 'enable_prefix_caching': False}",
        "starting vLLM",
    ),
    (
        "(EngineCore_DP0 pid=12343) INFO 11-20 08:55:03 [core.py:93] Initializing a V1 LLM engine "
        "(v0.11.2) with config: model='deepseek-ai/DeepSeek-OCR', compilation_config="
        '{"level":3,"use_inductor":true,"compile_sizes":[]}',
        "starting vLLM",
    ),
    (
        "(EngineCore_DP0 pid=12343) INFO 11-20 08:55:05 [gpu_model_runner.py:2602] Starting to "
        "load model deepseek-ai/DeepSeek-OCR...",
        "loading weights",
    ),
    (
        "Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:01<00:00,  1.45s/it]",
        "loading weights",
    ),
    (
        "(EngineCore_DP0 pid=12343) INFO 11-20 08:55:09 [default_loader.py:267] Loading weights "
        "took 1.52 seconds",
        "loading weights",
    ),
    (
        "(EngineCore_DP0 pid=12343) INFO 11-20 08:55:20 [backends.py:548] Dynamo bytecode "
        "transform time: 5.31 s",
        "compiling (torch.compile)",
    ),
    (
        "(EngineCore_DP0 pid=12343) INFO 11-20 08:55:30 [backends.py:215] Compiling a graph for "
        "dynamic shape takes 9.87 s",
        "compiling (torch.compile)",
    ),
    (
        "(EngineCore_DP0 pid=12343) INFO 11-20 08:55:35 [gpu_worker.py:298] Available KV cache "
        "memory: 58.12 GiB",
        "allocating KV cache",
    ),
    (
        "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 100%|██████████| 67/67 "
        "[00:04<00:00, 15.2it/s]",
        "capturing CUDA graphs",
    ),
    (
        "(APIServer pid=12227) INFO 11-20 08:56:01 [api_server.py:2018] Starting vLLM API server "
        "0 on http://0.0.0.0:8000",
        "starting API server",
    ),
    ("(APIServer pid=12227) INFO:     Application startup complete.", "ready"),
    ("Fetching 9 files:  22%|██▏       | 2/9 [00:10<00:35,  5.01s/it]", "downloading the model"),
    (
        '(APIServer pid=12227) INFO:     127.0.0.1:50012 - "POST /v1/chat/completions HTTP/1.1"',
        None,
    ),
    ("", None),
]


@pytest.mark.parametrize(("line", "status"), START_LOG)
def test_status_from_line(line: str, status: str | None) -> None:
    assert status_from_line(line) == status


TRACEBACK = """\
(EngineCore_DP0 pid=2211) ERROR 11-24 10:01:02 [core.py:708] EngineCore failed to start.
(EngineCore_DP0 pid=2211) ERROR 11-24 10:01:02 [core.py:708] Traceback (most recent call last):
(EngineCore_DP0 pid=2211) ERROR 11-24 10:01:02 [core.py:708]   File "/venv/lib/python3.12/\
site-packages/vllm/v1/engine/core.py", line 699, in run_engine_core
{error}
(APIServer pid=2100) RuntimeError: Engine core initialization failed. See root cause above. \
Failed core proc(s): {{}}
"""


def tb(error: str) -> str:
    return TRACEBACK.format(error=error)


CASES = [
    # (log text, returncode, words in the reason, words in the fix)
    (tb("RuntimeError: No CUDA GPUs are available"), 1, ["GPU"], ["nvidia-smi"]),
    (tb("RuntimeError: Failed to infer device type"), 1, ["no usable NVIDIA GPU"], ["driver"]),
    (
        "ImportError: libcuda.so.1: cannot open shared object file: No such file or directory",
        1,
        ["GPU"],
        ["nvidia-smi"],
    ),
    (
        tb(
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
            "total capacity of 23.55 GiB of which 1.02 GiB is free."
        ),
        1,
        ["out of GPU memory"],
        ["--max-model-len", "--gpu-memory-utilization"],
    ),
    (
        tb(
            "ValueError: No available memory for the cache blocks. Try increasing "
            "`gpu_memory_utilization` when initializing the engine."
        ),
        1,
        ["KV cache"],
        ["--max-model-len", "--gpu-memory-utilization"],
    ),
    (
        tb(
            "ValueError: The model's max seq len (8192) is larger than the maximum number of "
            "tokens that can be stored in KV cache (4512). Try increasing `gpu_memory_utilization`"
            " or decreasing `max_model_len` when initializing the engine."
        ),
        1,
        ["KV cache"],
        ["--max-model-len"],
    ),
    (
        tb(
            "ValueError: Free memory on device (10.5/79.1 GiB) on startup is less than desired "
            "GPU memory utilization (0.9, 71.2 GiB). Decrease GPU memory utilization or reduce "
            "GPU memory used by other processes."
        ),
        1,
        ["free GPU memory"],
        ["--gpu-memory-utilization"],
    ),
    (
        "(APIServer pid=352089) Value error, Model architectures ['DeepseekOCRForCausalLM'] are "
        "not supported for now. Supported architectures: dict_keys(['ApertusForCausalLM', ...])",
        1,
        ["DeepseekOCRForCausalLM"],
        ["0.11.1"],
    ),
    (
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
        "  Value error, Model architectures ['DeepseekOCR2ForCausalLM'] are not supported for now.",
        1,
        ["DeepseekOCR2ForCausalLM"],
        ["0.16.0"],
    ),
    (
        tb(
            "TypeError: DeepseekOCRProcessor.__call__() got an unexpected keyword argument "
            "'tokenization_kwargs'"
        ),
        1,
        ["tokenization_kwargs"],
        ["0.11.1"],
    ),
    (
        "ValueError: Failed to load LogitsProcessor "
        "vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor\n"
        "ModuleNotFoundError: No module named 'vllm.model_executor.models.deepseek_ocr'",
        1,
        ["too old"],
        ["0.11.1"],
    ),
    (
        "vllm: error: unrecognized arguments: --mm-processor-cache-gb 0",
        2,
        ["--mm-processor-cache-gb"],
        ["known-good range"],
    ),
    (
        "huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error. (Request ID: Root=1-6) "
        "Repository Not Found for url: https://huggingface.co/api/models/deepseek-ai/NoSuchOCR/"
        "revision/main.",
        1,
        ["could not be found"],
        ["model id", "local folder"],
    ),
    (
        "OSError: We couldn't connect to 'https://huggingface.co' to load this file, couldn't find"
        " it in the cached files and it looks like deepseek-ai/DeepSeek-OCR is not the path to a "
        "directory containing a file named config.json.",
        1,
        ["cannot be reached"],
        ["download", "local folder"],
    ),
    (
        "huggingface_hub.errors.LocalEntryNotFoundError: An error happened while trying to locate "
        "the file on the Hub and we cannot find the requested files in the local cache.",
        1,
        ["not in the local cache"],
        ["online"],
    ),
    (
        "OSError: /data/models/ocr does not appear to have a file named config.json. Checkout "
        "'https://huggingface.co//data/models/ocr/tree/None' for available files.",
        1,
        ["/data/models/ocr", "config.json"],
        ["folder"],
    ),
    (
        "(APIServer pid=7) ERROR:    [Errno 98] error while attempting to bind on address "
        "('127.0.0.1', 8000): address already in use",
        1,
        ["port"],
        ["free port"],
    ),
    (
        tb("ModuleNotFoundError: No module named 'flashinfer'"),
        1,
        ["flashinfer"],
        ["VLLM_USE_FLASHINFER_SAMPLER=0"],
    ),
    (
        "Fatal Python error: Floating point exception\n"
        '  File ".../vllm/vllm_flash_attn/flash_attn_interface.py", line 201 in '
        "get_scheduler_metadata",
        -8,
        ["SIGFPE"],
        ["--attention-backend TRITON_ATTN"],
    ),
    ("(EngineCore_DP0 pid=9) (nothing useful)", -8, ["SIGFPE"], ["TRITON_ATTN"]),
    (
        tb(
            "torch.AcceleratorError: CUDA error: an illegal memory access was encountered\n"
            "Triton Error [CUDA]: an illegal memory access was encountered"
        ),
        1,
        ["illegal memory access"],
        ["--max-num-batched-tokens 16384"],
    ),
    (
        '  File ".../xgrammar/base.py", line 48, in _load_lib\n'
        "TypeError: load_lib_module() got an unexpected keyword argument 'extra_lib_paths'",
        1,
        ["xgrammar"],
        ["xgrammar==0.2.5.post1"],
    ),
    ("/usr/bin/python3: No module named vllm", 1, ["not installed"], ["OCRDESK_VLLM"]),
    (
        "ValueError: Failed to load LogitsProcessor plugin "
        "ocrdesk_ngram_logits:NGramBatchLogitsProcessor\n"
        "ModuleNotFoundError: No module named 'ocrdesk_ngram_logits'",
        1,
        ["batch n-gram processor"],
        ["OCRDESK_NGRAM_PROCESSOR=recipe"],
    ),
]


@pytest.mark.parametrize(("log", "returncode", "in_reason", "in_fix"), CASES)
def test_classify_failure(
    log: str, returncode: int, in_reason: list[str], in_fix: list[str]
) -> None:
    reason, fix = classify_failure(log, returncode)
    for word in in_reason:
        assert word in reason
    for word in in_fix:
        assert word in fix
    assert known_failure(log, returncode) == (reason, fix)


def test_flashinfer_wins_over_the_engine_core_message() -> None:
    log = tb("ModuleNotFoundError: No module named 'flashinfer'") + "CUDA out of memory\n"
    assert "flashinfer" in classify_failure(log, 1)[0]


def test_killed_by_a_signal_with_nothing_recognisable_names_the_signal_and_the_log() -> None:
    reason, fix = classify_failure("INFO starting\nINFO loading", -9, log_path="/tmp/v.log")
    assert "SIGKILL" in reason
    assert "out-of-memory killer" in reason
    assert "/tmp/v.log" in fix
    assert known_failure("INFO starting", -9) is None

    reason, fix = classify_failure("INFO starting", -11, log_path="/tmp/v.log")
    assert reason == "vLLM was killed by SIGSEGV"
    assert fix == "read the full log at /tmp/v.log for the cause"


def test_a_wrapper_scripts_128_plus_signal_exit_status() -> None:
    assert "SIGSEGV" in classify_failure("", 139)[0]
    assert "TRITON_ATTN" in classify_failure("", 136)[1]  # 128 + SIGFPE through bash


def test_unknown_exit_quotes_the_last_error_line() -> None:
    log = "INFO a\nERROR something odd: KeyError 'x'\nINFO shutting down\n"
    reason, fix = classify_failure(log, 3)
    assert reason.startswith("vLLM exited with code 3")
    assert "KeyError 'x'" in reason
    assert "log" in fix
    assert reason.strip() and reason != "failed"


def test_still_running_without_a_clue() -> None:
    reason, _ = classify_failure("INFO loading", None)
    assert "did not finish starting" in reason


def test_mask_secret_hides_every_copy_of_the_key_and_nothing_else() -> None:
    line = "non-default args: {'api_key': ['s3cr-t_K'], 'port': 8000} again s3cr-t_K"
    assert (
        mask_secret(line, "s3cr-t_K")
        == "non-default args: {'api_key': ['***'], 'port': 8000} again ***"
    )
    assert mask_secret(line.encode(), "s3cr-t_K") == mask_secret(line, "s3cr-t_K").encode()
    assert mask_secret(line, "") == line  # no key yet: nothing to mask, nothing garbled
