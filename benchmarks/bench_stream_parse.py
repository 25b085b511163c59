"""How much streaming costs over parsing the whole text, and that it stays linear.

Run from the repository root:  .venv/bin/python benchmarks/bench_stream_parse.py [--repeat N]

Uses corpus file 07 (35 KB, the broken-det garbage loop). Prints the best time of N runs for:
parsing it whole; feeding it in ~1-token deltas (regex-split, about 4 characters each) and in
1-character deltas, then finishing; the same with a GUI-like snapshot every 25 deltas; feeding
the text repeated 2x and 4x (linear: time per character stays flat); and a naive streamer that
re-parses everything per delta (quadratic) on prefixes. Also all corpus files concatenated (tag
dense, where parsing whole does more work per character). Last, a 20 MB answer with 280,000
boxes (issue 17: a runaway page): parsing whole and streaming it must stay linear in size and
boxes, so the time per box of the whole answer matches that of its first eighth (best of 1;
`--no-big` skips it).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocrdesk.engine.parser import StreamParser, parse  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "model-outputs"
W, H = 1240, 1754
TOKEN = re.compile(r"<\|/?(?:ref|det)\|>|\s*\S{1,4}|\s+")


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def stream(deltas: list[str], snapshot_every: int = 0) -> None:
    parser = StreamParser(W, H)
    for i, delta in enumerate(deltas):
        parser.feed(delta)
        if snapshot_every and i % snapshot_every == 0:
            parser.snapshot()
    parser.finish()


def naive(deltas: list[str]) -> None:
    text = ""
    for delta in deltas:
        text += delta
        parse(text, W, H)


def big_answer(boxes: int) -> str:
    """A runaway grounded answer: `boxes` one-box blocks of about 71 characters each."""
    return "".join(
        f"<|ref|>text<|/ref|><|det|>[[{k % 900}, {k % 850 + 7}, {k % 900 + 90}, {k % 850 + 33}]]"
        f"<|/det|>\nline {k} here.\n\n"
        for k in range(boxes)
    )


def bench_big() -> None:
    print("a 20 MB answer, 1-token deltas (best of 1):")
    for boxes in (35_000, 280_000):
        raw = big_answer(boxes)
        tokens = TOKEN.findall(raw)
        t_whole = best(lambda r=raw: parse(r, W, H), 1)  # type: ignore[misc]
        t = best(lambda d=tokens: stream(d), 1)  # type: ignore[misc]
        print(
            f"  {boxes:7} boxes ({len(raw) / 1e6:5.1f} MB, {len(tokens)} deltas):"
            f" parse whole {t_whole:6.2f} s ({t_whole / boxes * 1e6:5.1f} us/box),"
            f" streaming {t:6.2f} s ({t / boxes * 1e6:5.1f} us/box), ratio {t / t_whole:4.1f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-big", action="store_true", help="skip the 20 MB answer")
    args = ap.parse_args()
    path = next(CORPUS.glob("07_*.txt"), None)
    if path is None:
        sys.exit(f"corpus file 07 not found under {CORPUS}")
    raw = path.read_text(encoding="utf-8")
    tokens = TOKEN.findall(raw)
    assert "".join(tokens) == raw
    chars = list(raw)
    r = args.repeat
    print(f"{path.name}: {len(raw)} chars, {len(tokens)} token deltas, best of {r}")

    whole = best(lambda: parse(raw, W, H), r)
    print(f"  parse whole                    {whole * 1e3:8.2f} ms")
    rows = [
        ("feed 1-token deltas + finish", lambda: stream(tokens), len(tokens)),
        ("  + snapshot every 25 deltas", lambda: stream(tokens, 25), len(tokens)),
        ("feed 1-char deltas + finish", lambda: stream(chars), len(chars)),
    ]
    for name, fn, n in rows:
        t = best(fn, r)
        per = t / n * 1e6
        print(f"  {name:30} {t * 1e3:8.2f} ms  {per:5.2f} us/delta  ratio {t / whole:5.1f}x")

    full = StreamParser(W, H)
    full.feed(raw)
    t = best(full.snapshot, r)
    print(f"  one snapshot() of the whole    {t * 1e3:8.2f} ms")

    # Tag-dense text: every corpus file one after the other.
    dense = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.txt")))
    dense_tokens = TOKEN.findall(dense)
    t_whole = best(lambda: parse(dense, W, H), r)
    t = best(lambda: stream(dense_tokens), r)
    print(
        f"all corpus files ({len(dense)} chars, {len(dense_tokens)} token deltas):"
        f" parse whole {t_whole * 1e3:.2f} ms, 1-token deltas {t * 1e3:.2f} ms,"
        f" ratio {t / t_whole:.1f}x"
    )

    print("linearity (1-token deltas of the text repeated k times):")
    for k in (1, 2, 4):
        deltas = tokens * k
        t = best(lambda d=deltas: stream(d), max(1, r // k))  # type: ignore[misc]
        print(f"  k={k}: {t * 1e3:8.2f} ms  {t / (k * len(raw)) * 1e9:6.1f} ns/char")

    print("naive re-parse per delta (quadratic), on prefixes:")
    for n in (500, 1000, 2000):
        prefix = tokens[:n]
        t_naive = best(lambda p=prefix: naive(p), 1)  # type: ignore[misc]
        t_stream = best(lambda p=prefix: stream(p), r)  # type: ignore[misc]
        size = len("".join(prefix))
        print(
            f"  {n:5} deltas ({size:6} chars): naive {t_naive * 1e3:8.1f} ms,"
            f" streaming {t_stream * 1e3:6.2f} ms ({t_naive / t_stream:6.0f}x)"
        )
    if not args.no_big:
        bench_big()


if __name__ == "__main__":
    main()
