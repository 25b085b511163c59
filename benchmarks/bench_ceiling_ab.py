"""A/B client ceiling: an older checkout against this one, alternated, against one loopback server.

The page is a real lecture page (shared/corpus/pages/lecture-006; its PDF page has the image's own
aspect ratio) with its real output, so that triage finds what it finds on real work (nothing) and
no retry fires. bench_client.py's lorem-ipsum pages under the replayed output of another page are
"uncovered" everywhere, and would measure region retries instead of the client.

Usage: .venv/bin/python benchmarks/bench_ceiling_ab.py [--rounds 3] [--pages 100] [VARIANT ...]
       The old checkout: OCRDESK_OLD (default ../old58: `git worktree add ../old58 58ff3f5`).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pymupdf  # noqa: E402
from PIL import Image  # noqa: E402

from tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402

OLD = Path(os.environ.get("OCRDESK_OLD", str(REPO.parent / "old58")))
LECTURE = REPO.parent / "shared" / "corpus" / "pages" / "lecture-006"
OLD_FORMATS = ["--formats", "md,raw,json,layout"]  # the defaults before the searchable PDF
NEW_ENTRY = ["-m", "ocrdesk"]
OLD_ENTRY = "from engine.cli import main; main()"  # before the one installed name
VARIANTS: dict[str, tuple[Path, list[str], list[str]]] = {
    "old 58ff3f5 c16": (OLD, ["-c", OLD_ENTRY], ["--concurrency", "16"]),
    "new c16": (REPO, NEW_ENTRY, ["--concurrency", "16"]),
    "new defaults": (REPO, NEW_ENTRY, []),
    "new c16 old formats": (REPO, NEW_ENTRY, ["--concurrency", "16", *OLD_FORMATS]),
    "new c16 old formats, no retry": (
        REPO,
        NEW_ENTRY,
        ["--concurrency", "16", "--retry", "none", *OLD_FORMATS],
    ),
}


def make_pdf(path: Path, pages: int) -> Path:
    data = LECTURE.with_suffix(".jpg").read_bytes()
    width, height = Image.open(LECTURE.with_suffix(".jpg")).size
    doc = pymupdf.open()
    for _ in range(pages):
        page = doc.new_page(width=595, height=595 * height / width)
        page.insert_image(page.rect, stream=data)
    doc.save(path)
    doc.close()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("variants", nargs="*", default=list(VARIANTS), metavar="VARIANT")
    args = ap.parse_args()
    output = Path(str(LECTURE) + ".raw.txt").read_text(encoding="utf-8")
    results: dict[str, list[float]] = {name: [] for name in args.variants}
    cpu: dict[str, list[float]] = {name: [] for name in args.variants}
    # As installed (pip compiles every module): both trees' bytecode is written before the
    # rounds and used by them, whatever PYTHONDONTWRITEBYTECODE says here. Without it each run
    # compiles its sources first, which costs the larger tree more (a second a run here).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for tree in {cwd for cwd, _, _ in (VARIANTS[name] for name in args.variants)}:
        packages = [str(tree / p) for p in ("engine", "gui", "ocrdesk") if (tree / p).is_dir()]
        subprocess.run(
            [str(REPO / ".venv" / "bin" / "python"), "-m", "compileall", "-q", *packages],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer([output]) as server:
        pdf = make_pdf(Path(tmp) / "ceiling.pdf", args.pages)
        for r in range(args.rounds):
            for k, name in enumerate(args.variants):
                cwd, entry, extra = VARIANTS[name]
                cmd = [
                    str(REPO / ".venv" / "bin" / "python"), *entry, "convert", str(pdf),
                    "-o", str(Path(tmp) / f"out{r}-{k}"), "--server", server.url,
                    "--api-key", server.api_key or "", "-q", *extra,
                ]  # fmt: skip
                started = time.perf_counter()
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(
                    cmd, cwd=cwd, env={**env, "PYTHONPATH": str(cwd)}, check=True,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                results[name].append(args.pages / (time.perf_counter() - started))
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                cpu[name].append(used / args.pages * 1000)
    # CPU time (the convert process and the render processes it waited for) is what a loaded
    # machine disturbs least: on an idle one, the ceiling is the cores divided by it.
    for name, rates in results.items():
        print(
            f"{name:32s} "
            + " ".join(f"{x:5.1f}" for x in rates)
            + " pages/s   "
            + " ".join(f"{x:5.1f}" for x in cpu[name])
            + " CPU ms/page"
        )


if __name__ == "__main__":
    main()
