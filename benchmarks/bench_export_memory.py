"""What writing a document's export costs as it grows: per-page write time, the cost of a
combined-file rebuild ("flush"), and peak memory, for 200 and for 2,000 pages.

Run from the repository root:  .venv/bin/python benchmarks/bench_export_memory.py [--pages 200 2000]

No server: each size runs in a fresh child process that feeds `DocumentExport` (through
`ExportSink` where the engine has it) synthetic PageResults of a realistic size (~3 KB raw text,
~3 KB markdown, 20 grounded blocks), without page images, so only the journal and the combined
files are measured. Prints, per size: the mean and the slowest per-page write over the last 100
pages, the time of one combined-file rebuild at that size (`finish`), and the child's peak RSS
against its RSS before the first page (the interpreter and imports).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(pages: int) -> dict[str, float]:
    from ocrdesk.engine.export import DocumentExport
    from ocrdesk.engine.results import Block, PageResult, PageStatus

    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 2
    blocks = [Block("text", ((10.0 * i, 20.0, 10.0 * i + 300, 60.0),), text) for i in range(20)]
    raw = "".join(
        f"<|ref|>text<|/ref|><|det|>[[{i}, 20, 300, 60]]<|/det|>\n{text}\n" for i in range(20)
    )
    markdown = "\n\n".join(text for _ in range(20))
    base = _rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "doc"
        export = DocumentExport(folder, source="doc.pdf", model="m", task="markdown")
        add = export.add_page
        try:
            from ocrdesk.engine.pipeline import DocumentJob, PageFinished
            from ocrdesk.engine.sink import ExportSink

            sink = ExportSink(model="m", task="markdown")
            job = DocumentJob("doc.pdf")
            sink.add(job, export)

            def add(result: PageResult, image: None) -> None:
                failure = sink.handle(PageFinished(job, result, image))
                assert failure is None, failure
        except ImportError:
            pass  # an engine before ExportSink: DocumentExport alone
        times = []
        for n in range(1, pages + 1):
            result = PageResult(
                n, 1190, 1684, PageStatus.DONE, raw=raw, markdown=markdown, blocks=blocks
            )
            t0 = time.perf_counter()
            add(result, None)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        export.finish()
        rebuild = time.perf_counter() - t0
        peak = _peak_mib()  # before the check below, which loads the whole file
        json.loads(export.json_path.read_text(encoding="utf-8"))  # a whole, valid file
    last = times[-100:]
    return {
        "pages": pages,
        "write_mean_ms": 1000 * sum(last) / len(last),
        "write_max_ms": 1000 * max(last),
        "rebuild_s": rebuild,
        "base_rss_mib": base,
        "peak_rss_mib": peak,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0
    head = ("pages", "write mean", "write max", "rebuild", "peak RSS", "+ over base")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (6, 11, 10, 9, 9, 11), strict=True)))
    for pages in args.pages:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(pages)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.splitlines()[-1])
        print(
            f"{r['pages']:>6} {r['write_mean_ms']:>8.2f} ms {r['write_max_ms']:>7.2f} ms "
            f"{r['rebuild_s']:>7.3f} s {r['peak_rss_mib']:>5.0f} MiB "
            f"{r['peak_rss_mib'] - r['base_rss_mib']:>7.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
