"""How well the triage checks (engine/triage.py) do on the corpus, and what the loop detector costs.

Run from the repository root:  .venv/bin/python benchmarks/bench_triage.py

Prints, with the corpus's verdicts from tests/engine/test_triage.py (`RECORDED`):
- the false-alarm rate: clean outputs that get any flag (text checks on the recorded outputs,
  all checks on the lecture pages with their images);
- the detection rate: expected kinds found on the failing outputs;
- characters saved by early loop stops: streamed before the cut against the whole output;
- the LoopDetector's cost per delta (about one token each), in microseconds;
- the peak share of repeating grams (the loop threshold's margin) and, for `uncovered`, the
  largest region left on the clean lecture pages and the share of single removed blocks found.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocrdesk.engine import triage  # noqa: E402
from ocrdesk.engine.tasks import Task  # noqa: E402
from tests.engine.test_triage import (  # noqa: E402
    LECTURES,
    RECORDED,
    TOKEN,
    lecture_page,
    page_of,
    recorded_raw,
)


def flags_of(key: str) -> set[triage.FlagKind]:
    if key.startswith("lecture-"):
        page, image = lecture_page(key)
        return {f.kind for f in triage.check_page(page, image, Task.MARKDOWN)}
    return {f.kind for f in triage.check_page(page_of(recorded_raw(key)), None, Task.MARKDOWN)}


def peak_share(raw: str) -> float:
    """The most repeating grams a window held over the whole text, with no loop threshold."""
    saved = triage.LOOP_SHARE
    triage.LOOP_SHARE = 2.0
    try:
        detector = triage.LoopDetector()
        for m in TOKEN.finditer(raw):
            detector.feed(m.group())
        return detector.peak / triage.LOOP_WINDOW
    finally:
        triage.LOOP_SHARE = saved


def main() -> None:
    clean = [k for k, kinds in RECORDED.items() if not kinds]
    alarms = {k: flags_of(k) for k in clean}
    false = [k for k, found in alarms.items() if found]
    print(f"false alarms: {len(false)}/{len(clean)} clean outputs flagged {false}")

    expected = found = 0
    for key, kinds in RECORDED.items():
        if not kinds:
            continue
        got = flags_of(key)
        expected += len(kinds)
        found += len(kinds & got)
        extra = got - kinds
        print(
            f"  {key:12} expected {sorted(k.value for k in kinds)} found"
            f" {sorted(k.value for k in kinds & got)}",
            f"extra {sorted(extra)}" if extra else "",
        )
    print(f"detection: {found}/{expected} expected flags found on the failing outputs")

    total_streamed = total_whole = 0
    for key in sorted(k for k, kinds in RECORDED.items() if triage.FlagKind.LOOP in kinds):
        raw = recorded_raw(key)
        detector = triage.LoopDetector()
        verdict = None
        for m in TOKEN.finditer(raw):
            if verdict := detector.feed(m.group()):
                break
        streamed = verdict.at if verdict else len(raw)
        start = verdict.start if verdict else len(raw)
        total_streamed += streamed
        total_whole += len(raw)
        print(
            f"  loop {key:12} cut at {streamed:6} of {len(raw):6} characters"
            f" ({1 - streamed / len(raw):.0%} saved), kept raw[:{start}]"
        )
    print(
        f"early stops: {total_streamed} characters streamed of {total_whole}"
        f" ({1 - total_streamed / total_whole:.0%} saved)"
    )

    text = "".join(recorded_raw(k) for k in RECORDED)
    deltas = [m.group() for m in TOKEN.finditer(text)]
    best = float("inf")
    for _ in range(5):
        detector = triage.LoopDetector()
        t0 = time.perf_counter()
        for d in deltas:
            if detector.feed(d):
                detector = triage.LoopDetector()
        best = min(best, time.perf_counter() - t0)
    print(
        f"detector cost: {best / len(deltas) * 1e6:.2f} us per delta"
        f" ({len(deltas)} deltas, {len(text)} characters, best of 5)"
    )

    print("peak share of repeating grams (threshold off; loop at", triage.LOOP_SHARE, "):")
    for key in RECORDED:
        print(f"  {key:12} {peak_share(recorded_raw(key)):.2f}")

    largest = 0
    hit = total = 0
    for key in LECTURES:
        page, image = lecture_page(key)
        boxes = [b for block in page.blocks for b in block.boxes]
        regions = triage.uncovered_regions(image, boxes, min_cells=1)
        if not RECORDED[key]:
            top = regions[0][1] if regions else 0
            largest = max(largest, top)
            print(f"  {key}: largest uncovered region {top} cells")
        for k, block in enumerate(page.blocks):
            others = [b for j, other in enumerate(page.blocks) if j != k for b in other.boxes]
            if block.box is None or not others:
                continue
            total += 1
            x1, y1, x2, y2 = block.box
            left = triage.uncovered_regions(image, others)
            hit += any(b[0] < x2 and x1 < b[2] and b[1] < y2 and y1 < b[3] for b, _ in left)
    print(
        f"uncovered: largest region on clean lecture pages {largest} cells"
        f" (threshold {triage.UNCOVERED_MIN_CELLS}); single removed blocks found {hit}/{total}"
    )


if __name__ == "__main__":
    main()
