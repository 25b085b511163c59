"""The local engine serves with OCRDesk's batch n-gram processor, and the recipe's on request.

The command names the processor, its module is put in a folder of its own that goes first on
the PYTHONPATH of the process the watchdog starts (the fake `vllm` of tests/fakes stands in for
it: its environment is read back from /proc), and the module needs nothing of OCRDesk there.
None of this needs torch: engine/ngram_logits.py is read, not imported.
"""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ocrdesk.engine.errors import EngineStartError
from ocrdesk.engine.local_server import (
    NGRAM_PROCESSOR_ENV,
    LocalServer,
    LocalServerConfig,
    build_command,
    install_batch_processor,
    processor_dir,
    server_env,
)
from ocrdesk.engine.tasks import (
    BATCH_LOGITS_PROCESSOR,
    BATCH_PROCESSOR_MODULE,
    FAMILIES,
    LOGITS_PROCESSOR,
    RECIPE_LOGITS_PROCESSOR,
    NGramProcessor,
    Sampling,
)

REPO = Path(__file__).resolve().parents[2]
MODULE_FILE = REPO / "engine" / "ngram_logits.py"
FAKE_VLLM = REPO / "tests" / "fakes" / "vllm"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalServerConfig:
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("OCRDESK_VLLM", raising=False)
    monkeypatch.delenv(NGRAM_PROCESSOR_ENV, raising=False)
    for name in [name for name in os.environ if name.startswith("FAKE_VLLM_")]:
        monkeypatch.delenv(name)
    return LocalServerConfig(
        vllm=str(FAKE_VLLM),
        env={"FAKE_VLLM_STATE_DIR": str(tmp_path)},
        log_dir=tmp_path / "logs",
        start_timeout=30.0,
        stop_timeout=5.0,
    )


def processor_named(command: list[str]) -> str:
    return command[command.index("--logits_processors") + 1]


def module_constants() -> dict[str, object]:
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
                found[target.id] = node.value.value
    return found


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode() for key, value in pairs}


# -- the command and the environment ------------------------------------------------------------


def test_the_batch_processor_is_the_default(config: LocalServerConfig) -> None:
    assert config.ngram_processor is NGramProcessor.BATCH
    assert LOGITS_PROCESSOR == BATCH_LOGITS_PROCESSOR
    assert processor_named(build_command(config, 1)) == BATCH_LOGITS_PROCESSOR
    assert f"{BATCH_PROCESSOR_MODULE}:NGramBatchLogitsProcessor" == BATCH_LOGITS_PROCESSOR


def test_the_recipes_processor_is_still_selectable(
    config: LocalServerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.ngram_processor = NGramProcessor.RECIPE
    command = build_command(config, 1)
    assert processor_named(command) == RECIPE_LOGITS_PROCESSOR
    assert BATCH_LOGITS_PROCESSOR not in command
    assert "PYTHONPATH" not in server_env(config, {})
    monkeypatch.setenv(NGRAM_PROCESSOR_ENV, "Recipe")
    assert LocalServerConfig().ngram_processor is NGramProcessor.RECIPE
    for family in FAMILIES.values():
        assert processor_named(list(family.flags(NGramProcessor.RECIPE))) == RECIPE_LOGITS_PROCESSOR
        assert family.flags() == family.server_flags


def test_none_runs_vllm_without_a_processor(config: LocalServerConfig) -> None:
    config.ngram_processor = NGramProcessor.NONE
    command = build_command(config, 1)
    assert "--logits_processors" not in command
    assert "--no-enable-prefix-caching" in command
    assert "PYTHONPATH" not in server_env(config, {})


@pytest.mark.allow_log(
    r"^OCRDESK_NGRAM_PROCESSOR='fast' is none of batch, recipe, none: using batch$"
)
def test_an_unknown_processor_name_falls_back_to_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(NGRAM_PROCESSOR_ENV, "fast")
    assert LocalServerConfig().ngram_processor is NGramProcessor.BATCH


def test_the_processor_folder_goes_first_on_pythonpath(config: LocalServerConfig) -> None:
    folder = str(processor_dir(config))
    assert folder == str(config.log_dir.parent / "vllm-path")  # type: ignore[union-attr]
    assert server_env(config, {})["PYTHONPATH"] == folder
    env = server_env(config, {"PYTHONPATH": f"/opt/site{os.pathsep}{folder}", "HOME": "/h"})
    assert env["PYTHONPATH"] == os.pathsep.join([folder, "/opt/site"])
    assert env["HOME"] == "/h"


def test_the_module_is_installed_as_a_copy_kept_up_to_date(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "vllm-path"
    target = install_batch_processor(folder)
    assert target == folder / f"{BATCH_PROCESSOR_MODULE}.py"
    assert target.read_bytes() == MODULE_FILE.read_bytes()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [path.name for path in folder.iterdir()] == [target.name]  # nothing else of OCRDesk
    target.write_text("# an older OCRDesk's copy\n")
    install_batch_processor(folder)
    assert target.read_bytes() == MODULE_FILE.read_bytes()


# -- the module, as the vLLM process sees it ---------------------------------------------------


def test_the_module_imports_only_the_standard_library_torch_and_vllm() -> None:
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import needs OCRDesk's package"
            imported.add((node.module or "").split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"__future__", "torch", "vllm"}
    assert imported <= allowed, imported - allowed
    assert {"torch", "vllm"} <= imported
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    assert BATCH_LOGITS_PROCESSOR.split(":")[1] in classes


def test_the_module_reads_the_keys_the_client_sends() -> None:
    constants = module_constants()
    read = {constants["NGRAM_SIZE"], constants["WINDOW_SIZE"], constants["WHITELIST"]}
    assert read == set(Sampling().vllm_xargs())


# -- a started server --------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc/PID/environ")
async def test_the_started_vllm_finds_the_module_on_its_path(
    config: LocalServerConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    args_file, pid_file = tmp_path / "args.json", tmp_path / "vllm.pid"
    config.env.update(FAKE_VLLM_ARGS_FILE=str(args_file), FAKE_VLLM_PID_FILE=str(pid_file))
    async with LocalServer(config) as server:
        argv = json.loads(args_file.read_text())
        assert argv == build_command(config, server.port)[1:]
        assert processor_named(argv) == BATCH_LOGITS_PROCESSOR
        env = environ_of(int(pid_file.read_text()))
        folder, *rest = env["PYTHONPATH"].split(os.pathsep)
        assert rest == ["/somewhere/else"]
        assert Path(folder) == processor_dir(config)
        found = subprocess.run(  # what vLLM's import of the module name would find
            [
                sys.executable,
                "-c",
                "import importlib.util, sys;"
                f"print(importlib.util.find_spec({BATCH_PROCESSOR_MODULE!r}).origin)",
            ],
            env={"PYTHONPATH": env["PYTHONPATH"], "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=True,
        )
        origin = Path(found.stdout.strip())
        assert origin.parent == Path(folder)
        assert origin.read_bytes() == MODULE_FILE.read_bytes()
        assert f"PYTHONPATH={folder}" in server.log_path.read_text()


async def test_the_recipes_processor_leaves_pythonpath_alone(
    config: LocalServerConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    config.ngram_processor = NGramProcessor.RECIPE
    args_file, pid_file = tmp_path / "args.json", tmp_path / "vllm.pid"
    config.env.update(FAKE_VLLM_ARGS_FILE=str(args_file), FAKE_VLLM_PID_FILE=str(pid_file))
    async with LocalServer(config):
        assert processor_named(json.loads(args_file.read_text())) == RECIPE_LOGITS_PROCESSOR
        if Path("/proc/self/environ").exists():
            assert "PYTHONPATH" not in environ_of(int(pid_file.read_text()))
    assert not processor_dir(config).exists()


async def test_a_missing_module_fails_the_start_with_the_way_out(
    config: LocalServerConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen build that left the module out: the start says so and names the recipe."""
    monkeypatch.setattr(
        "ocrdesk.engine.local_server._BATCH_PROCESSOR_SOURCE", tmp_path / "missing.py"
    )
    server = LocalServer(config)
    with pytest.raises(EngineStartError) as raised:
        await server.start()
    assert "n-gram logits processor is not in this installation" in raised.value.reason
    assert f"{NGRAM_PROCESSOR_ENV}=recipe" in raised.value.fix
    assert not server.is_running()
