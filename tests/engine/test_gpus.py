"""Finding the GPUs (a stand-in nvidia-smi, a driver folder), the choice of GPUs, and the
in-flight ceiling that grows with the engines the servers report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocrdesk.engine import concurrency as cc
from ocrdesk.engine.app_settings import settings_path
from ocrdesk.engine.concurrency import ServerLoad, combine, next_limit, parse_metrics
from ocrdesk.engine.gpus import (
    ALL_GPUS,
    Gpu,
    GpuChoice,
    GpuChoiceError,
    cuda_env,
    find_gpus,
    parse_gpus,
)
from ocrdesk.engine.local_server import choose_gpus
from tests.conftest import REPO

FAKE_SYSTEM = REPO / "tests" / "fakes" / "system"
H200 = "NVIDIA H200"
TWO = [Gpu(0, H200, "GPU-00000000-fake-4a5b-8c9d-000000000000"),
       Gpu(1, H200, "GPU-00000001-fake-4a5b-8c9d-000000000001")]  # fmt: skip


def smi_env(gpus: int = 2, **more: str) -> dict[str, str]:
    """An environment whose PATH finds the stand-in nvidia-smi of `gpus` GPUs."""
    return {
        "PATH": f"{FAKE_SYSTEM}{os.pathsep}/usr/bin:/bin",
        "FAKE_NVIDIA_GPUS": str(gpus),
        **more,
    }


def no_proc(tmp_path: Path) -> Path:
    return tmp_path / "no-driver-folder"


def test_the_choice_parses() -> None:
    assert parse_gpus("all") == parse_gpus("") == parse_gpus(" ALL ") == ALL_GPUS
    assert parse_gpus("2") == GpuChoice(count=2)
    assert parse_gpus("0,2") == GpuChoice(devices=(0, 2))
    assert parse_gpus("1,") == parse_gpus("device=1") == GpuChoice(devices=(1,))
    assert parse_gpus("2, 0, 2") == GpuChoice(devices=(2, 0))  # in order, once each
    for bad in ("0", "-1", "two", "0;1", "device=", "device=a", "1,x"):
        with pytest.raises(GpuChoiceError):
            parse_gpus(bad)
    # str() writes what parses back to the same choice (the Settings field shows it)
    for choice in (
        ALL_GPUS,
        GpuChoice(count=3),
        GpuChoice(devices=(1,)),
        GpuChoice(devices=(0, 1)),
    ):
        assert parse_gpus(str(choice)) == choice


def test_the_choice_picks_from_the_gpus_found() -> None:
    assert ALL_GPUS.pick(TWO) == TWO
    assert GpuChoice(count=1).pick(TWO) == TWO[:1]
    assert GpuChoice(devices=(1, 0)).pick(TWO) == [TWO[1], TWO[0]]
    with pytest.raises(GpuChoiceError, match=r"GPU 3 is not among the GPUs found \(0: NVIDIA H200"):
        GpuChoice(devices=(0, 3)).pick(TWO)
    with pytest.raises(GpuChoiceError, match="3 GPUs asked for, 2 found"):
        GpuChoice(count=3).pick(TWO)
    # Nothing found: the engine runs as before, unless GPUs are named by number
    assert ALL_GPUS.pick([]) == GpuChoice(count=2).pick([]) == []
    assert GpuChoice(devices=(1,)).pick([]) == [Gpu(1, "")]


def test_nvidia_smi_finds_the_gpus(tmp_path: Path) -> None:
    assert find_gpus(smi_env(), proc=no_proc(tmp_path)) == TWO
    assert find_gpus(smi_env(gpus=0), proc=no_proc(tmp_path)) == []
    assert find_gpus({"PATH": "/nowhere"}, proc=no_proc(tmp_path)) == []


def test_cuda_visible_devices_is_honoured(tmp_path: Path) -> None:
    proc = no_proc(tmp_path)
    assert find_gpus(smi_env(CUDA_VISIBLE_DEVICES="1"), proc=proc) == [TWO[1]]
    assert find_gpus(smi_env(CUDA_VISIBLE_DEVICES="1,0"), proc=proc) == [TWO[1], TWO[0]]
    assert find_gpus(smi_env(CUDA_VISIBLE_DEVICES="GPU-00000001"), proc=proc) == [TWO[1]]
    # what cannot be mapped leaves the person's setting alone: none found, vLLM runs as before
    for unmapped in ("", "-1", "MIG-4d1f3c2a", "0,7", "GPU-0000000"):  # the last matches both
        assert find_gpus(smi_env(CUDA_VISIBLE_DEVICES=unmapped), proc=proc) == [], unmapped


def test_the_driver_folder_when_there_is_no_nvidia_smi(tmp_path: Path) -> None:
    folder = tmp_path / "gpus"
    for bus, model, uuid in (("0000:41:00.0", "NVIDIA RTX A6000", "GPU-bbbb"),
                             ("0000:01:00.0", "NVIDIA GeForce RTX 4090", "GPU-aaaa")):  # fmt: skip
        (folder / bus).mkdir(parents=True)
        (folder / bus / "information").write_text(
            f"Model: \t\t {model}\nIRQ:   \t\t 142\nGPU UUID: \t {uuid}\n"
            f"Bus Location: \t {bus}\nDevice Minor: \t 3\n"
        )
    found = find_gpus({"PATH": "/nowhere"}, proc=folder)
    # numbered in PCI bus order, as nvidia-smi numbers them (not by the device minor)
    assert found == [
        Gpu(0, "NVIDIA GeForce RTX 4090", "GPU-aaaa"),
        Gpu(1, "NVIDIA RTX A6000", "GPU-bbbb"),
    ]
    assert find_gpus({"PATH": "/nowhere", "CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, proc=folder) == [
        found[1]
    ]


def test_a_child_gets_its_gpus_in_nvidia_smis_numbering() -> None:
    assert cuda_env([TWO[1]]) == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert cuda_env(TWO)["CUDA_VISIBLE_DEVICES"] == "0,1"


@pytest.mark.allow_log(r"^the GPUs saved in Settings are ignored: 'x'")
def test_the_window_setting_is_the_default_of_the_cli() -> None:
    assert choose_gpus(None) == ALL_GPUS  # nothing saved
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[engine]\ngpus=1\n", encoding="utf-8")
    assert choose_gpus(None) == GpuChoice(count=1)
    assert choose_gpus("0,1") == GpuChoice(devices=(0, 1))  # --gpus wins
    path.write_text('[engine]\ngpus="device=1"\n', encoding="utf-8")  # as QSettings quotes it
    assert choose_gpus(None) == GpuChoice(devices=(1,))
    path.write_text("[engine]\ngpus=x\n", encoding="utf-8")
    assert choose_gpus(None) == ALL_GPUS


# -- the in-flight ceiling -------------------------------------------------------------------


def metrics(*engines: tuple[int, int]) -> str:
    return "".join(
        f'vllm:num_requests_running{{engine="{i}",model_name="m"}} {running}\n'
        f'vllm:num_requests_waiting{{engine="{i}",model_name="m"}} {waiting}\n'
        for i, (running, waiting) in enumerate(engines)
    )


def test_the_engines_are_counted() -> None:
    assert parse_metrics(metrics((3, 0))) == ServerLoad(3, 0, None, engines=1)
    assert parse_metrics(metrics((3, 0), (4, 1))) == ServerLoad(7, 1, None, engines=2)
    assert parse_metrics("vllm:num_requests_running 2\n") == ServerLoad(2, 0, None, engines=1)
    # one server per GPU: the pool adds them up
    two = combine([ServerLoad(200, 0, 0.2), ServerLoad(256, 0, 0.3)])
    assert two == ServerLoad(456, 0, 0.3, engines=2)


def test_the_limit_grows_past_one_gpus_ceiling_with_more_engines() -> None:
    def grown(engines: int) -> int:
        limit = cc.AUTO_START
        while True:  # every page sent runs, nothing waits: the server has room
            load = ServerLoad(limit, 0, 0.1, engines=engines)
            following = next_limit(limit, limit, load)
            if following == limit:
                return limit
            limit = following

    assert grown(1) == cc.ENGINE_LIMIT == 128
    assert grown(2) == 2 * cc.ENGINE_LIMIT
    assert grown(64) == cc.MAX_LIMIT  # never past the absolute ceiling
    assert cc.ceiling(4) == 4 * cc.ENGINE_LIMIT
