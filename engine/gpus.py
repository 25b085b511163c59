"""Which NVIDIA GPUs this machine has, and which of them the local engine uses.

Found without CUDA or torch in OCRDesk's own process (importing torch costs seconds and
gigabytes, and the client never needs it): `nvidia-smi -L` first, else the driver's
/proc/driver/nvidia/gpus (Linux; one folder per GPU, named by its PCI address). Both number the
GPUs in PCI bus order, as nvidia-smi shows them, and so does every GPU number a person writes
(`--gpus 0,2`, the window's "GPUs" setting). A child is given its GPUs in that same numbering:
CUDA_VISIBLE_DEVICES with CUDA_DEVICE_ORDER=PCI_BUS_ID (`cuda_env`), because CUDA's own default
order ("fastest first") can differ from nvidia-smi's on a machine of unlike GPUs.

CUDA_VISIBLE_DEVICES in OCRDesk's environment is honoured: only the GPUs it names are found
(numbers in nvidia-smi's numbering, or GPU UUIDs / their prefixes). A value this module cannot
map (MIG instances, anything else) means "none found": the local engine then leaves the
environment as it is and runs one vLLM as before, so nothing a person set up is overridden.

A choice (`GpuChoice`) is "all" (the default), "N" (the first N found) or a list of GPU numbers
("0,2"; "device=1" for one GPU alone, as `docker --gpus` writes it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ALL_GPUS",
    "PROC_GPUS",
    "Gpu",
    "GpuChoice",
    "GpuChoiceError",
    "cuda_env",
    "describe",
    "find_gpus",
    "gpus_argument",
    "parse_gpus",
]

#: The driver's folder: one subfolder per GPU (named by PCI address) with an `information` file.
PROC_GPUS = Path("/proc/driver/nvidia/gpus")
SMI_TIMEOUT = 15.0  # nvidia-smi can take seconds when the driver wakes the GPUs
_SMI_LINE = re.compile(r"^GPU (\d+): (.+?)(?: \(UUID: ([^)]+)\))?\s*$")


class GpuChoiceError(ValueError):
    """A GPU choice that does not parse, or names GPUs that are not there."""


@dataclass(frozen=True)
class Gpu:
    """One GPU: its number in nvidia-smi's (PCI bus) order, its name, its UUID ("" if unknown)."""

    index: int
    name: str
    uuid: str = ""

    def __str__(self) -> str:
        return f"{self.index}: {self.name}" if self.name else str(self.index)


@dataclass(frozen=True)
class GpuChoice:
    """Which GPUs to use: all found (neither field set), the first `count`, or `devices` by
    number."""

    count: int | None = None
    devices: tuple[int, ...] | None = None

    def __str__(self) -> str:
        if self.devices is not None:
            listed = ",".join(str(d) for d in self.devices)
            return listed if len(self.devices) > 1 else f"device={listed}"
        return "all" if self.count is None else str(self.count)

    def pick(self, found: list[Gpu]) -> list[Gpu]:
        """The GPUs of `found` this choice names, in its order; GpuChoiceError when it names
        more or others than there are. Nothing found: [] (the engine runs as it always did),
        except for GPUs named by number, which are taken at their word."""
        if self.devices is not None:
            if not found:
                return [Gpu(d, "") for d in self.devices]
            by_index = {gpu.index: gpu for gpu in found}
            missing = [d for d in self.devices if d not in by_index]
            if missing:
                names = ", ".join(str(d) for d in missing)
                raise GpuChoiceError(
                    f"GPU {names} {'is' if len(missing) == 1 else 'are'} not among the GPUs "
                    f"found ({describe(found)})"
                )
            return [by_index[d] for d in self.devices]
        if self.count is None or not found:
            return list(found)
        if self.count > len(found):
            raise GpuChoiceError(
                f"{self.count} GPUs asked for, {len(found)} found ({describe(found)})"
            )
        return found[: self.count]


ALL_GPUS = GpuChoice()


def parse_gpus(text: str) -> GpuChoice:
    """ "all" (or empty), "N" (the first N GPUs), "0,2" or "device=0,2" (those GPUs)."""
    value = text.strip().lower()
    if value in ("", "all"):
        return ALL_GPUS
    listed = value.removeprefix("device=")
    if listed != value or "," in listed:
        words = [word.strip() for word in listed.split(",") if word.strip()]
        if not words or not all(word.isdigit() for word in words):
            raise GpuChoiceError(f"{text!r}: GPU numbers are written like 0,2 or device=1")
        devices = tuple(dict.fromkeys(int(word) for word in words))  # in order, once each
        return GpuChoice(devices=devices)
    if not value.isdigit() or int(value) < 1:
        raise GpuChoiceError(
            f"{text!r} is no GPU choice: all, a number of GPUs (2), or GPU numbers (0,2; "
            "device=1 for GPU 1 alone)"
        )
    return GpuChoice(count=int(value))


def gpus_argument(text: str) -> GpuChoice:
    """`parse_gpus` as an argparse type: its message is what the person reads."""
    try:
        return parse_gpus(text)
    except GpuChoiceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def describe(gpus: list[Gpu]) -> str:
    """One line naming GPUs: "0: NVIDIA H200; 1: NVIDIA H200", or "none"."""
    return "; ".join(str(gpu) for gpu in gpus) or "none"


def cuda_env(gpus: list[Gpu]) -> dict[str, str]:
    """The environment that gives a child process exactly `gpus`, numbered as nvidia-smi does."""
    return {
        "CUDA_VISIBLE_DEVICES": ",".join(str(gpu.index) for gpu in gpus),
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }


def find_gpus(env: Mapping[str, str] | None = None, proc: Path | None = None) -> list[Gpu]:
    """The GPUs a child started with `env` (default: ours) may use, in nvidia-smi's order;
    [] when none are found or CUDA_VISIBLE_DEVICES names something this cannot map."""
    env = os.environ if env is None else env
    found = _from_smi(env) or _from_proc(PROC_GPUS if proc is None else proc)
    return _visible(found, env.get("CUDA_VISIBLE_DEVICES"))


def _from_smi(env: Mapping[str, str]) -> list[Gpu]:
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "-L"],
            capture_output=True,
            text=True,
            timeout=SMI_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if done.returncode != 0:
        return []
    gpus = []
    for line in done.stdout.splitlines():  # MIG instances are indented lines: not matched
        if found := _SMI_LINE.match(line):
            gpus.append(Gpu(int(found.group(1)), found.group(2).strip(), found.group(3) or ""))
    return gpus


def _from_proc(folder: Path) -> list[Gpu]:
    """The driver's GPU folders, sorted by PCI address: the order nvidia-smi numbers them in."""
    try:
        entries = sorted(p for p in folder.iterdir() if (p / "information").is_file())
    except OSError:
        return []
    gpus = []
    for index, entry in enumerate(entries):
        fields: dict[str, str] = {}
        try:
            text = (entry / "information").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        gpus.append(Gpu(index, fields.get("Model", ""), fields.get("GPU UUID", "")))
    return gpus


def _visible(gpus: list[Gpu], visible: str | None) -> list[Gpu]:
    """`gpus` as CUDA_VISIBLE_DEVICES lets a child see them: its entries in its order."""
    if visible is None:
        return gpus
    picked: list[Gpu] = []
    for word in (w.strip() for w in visible.split(",")):
        if word.isdigit():
            match = [gpu for gpu in gpus if gpu.index == int(word)]
        elif word.startswith("GPU-"):
            match = [gpu for gpu in gpus if gpu.uuid and gpu.uuid.startswith(word)]
        else:
            match = []
        if len(match) != 1:
            # "-1", "", a MIG instance, a GPU not there: CUDA would stop here too, or this
            # cannot tell which GPU it is; leave the person's setting alone.
            return []
        if match[0] not in picked:
            picked.append(match[0])
    return picked
