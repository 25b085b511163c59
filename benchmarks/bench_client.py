"""Client-side figures of `ocrdesk convert` against the loopback test server (no GPU).

Prints:
- the client-side ceiling: pages/s of `convert` on a 100-page PDF with the server streaming a
  real grounded page output at full speed (no token delay);
- the same for --large pages of 2182 x 3086 pt (a poster; 4364 x 6172 px at 144 dpi), with the
  mean image bytes per request: what capping the image at the model's size saves;
- peak RSS of the `convert` process for a 20-page and a 2,000-page PDF: the pipeline keeps at most
  `--concurrency` pages in memory, so the two should be close.

With `--logprobs`, only the ceiling, with token log-probabilities asked for and not, alternated
for `--rounds` rounds against the same server (which streams vLLM's logprobs chunks when asked):
what `Sampling.logprobs` costs the client (bigger chunks to decode, tokens to pair, each block's
confidence).

Usage: .venv/bin/python benchmarks/bench_client.py [--pages 100] [--big 2000] [--concurrency 16]
       [--small 20] [--large 20] [--memory-only] [--logprobs [--rounds 3]] [--retry none]
       (--memory-only: skip the ceiling runs, peak RSS figures only; --large 0: no poster run;
       --retry: convert's --retry, whose default `auto` OCRs again by region every page here,
       since the replayed boxes leave the generated pages' lines uncovered)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pymupdf  # noqa: E402

from tests.fakes.openai_server import FakeOpenAIServer, corpus_outputs  # noqa: E402


def make_pdf(path: Path, pages: int, size: tuple[float, float] = (595, 842)) -> Path:
    doc = pymupdf.open()
    scale = size[0] / 595
    for i in range(pages):
        page = doc.new_page(width=size[0], height=size[1])
        page.insert_text((72, 72 * scale), f"Benchmark page {i + 1}", fontsize=24 * scale)
        for line in range(30):
            page.insert_text(
                (72 * scale, (120 + line * 22) * scale),
                "lorem ipsum dolor sit amet " * 3,
                fontsize=10 * scale,
            )
    doc.save(path)
    doc.close()
    return path


def run_convert(
    pdf: Path,
    out: Path,
    server: FakeOpenAIServer,
    concurrency: int,
    logprobs: bool | None = None,
    retry: str | None = None,
) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one `ocrdesk convert` process (`logprobs`: asked for
    or not, through the request fields; None: the default)."""
    cmd = [
        sys.executable, "-m", "ocrdesk", "convert", str(pdf), "-o", str(out),
        "--server", server.url, "--api-key", server.api_key or "", "-q",
        "--concurrency", str(concurrency),
    ]  # fmt: skip
    if retry is not None:
        cmd += ["--retry", retry]
    if logprobs is not None:
        value = "true" if logprobs else "false"
        cmd += ["--request-field", f"logprobs={value}"]
        if logprobs:
            cmd += ["--request-field", "top_logprobs=0"]
        else:  # vLLM sends logprobs only with top_logprobs set: a null leaves them off
            cmd += ["--request-field", "top_logprobs=null"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"convert failed: {cmd}")
    return seconds, usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--big", type=int, default=2000)
    ap.add_argument("--small", type=int, default=20, help="pages of the small PDF (default 20)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--large", type=int, default=20, help="pages of the poster PDF (default 20)")
    ap.add_argument("--memory-only", action="store_true", help="skip the client-ceiling run")
    ap.add_argument(
        "--logprobs", action="store_true", help="the ceiling with logprobs on and off, alternated"
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each with --logprobs")
    ap.add_argument("--retry", choices=("auto", "none"), help="convert's --retry (its default)")
    args = ap.parse_args()
    outputs = corpus_outputs()
    # file 11 is a real DeepSeek-OCR-2 grounded page (tables, captions): a typical page's output
    page_output = next((o for o in outputs if "<|ref|>table<|/ref|>" in o), None) or outputs[0]
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer([page_output]) as server:
        root = Path(tmp)
        if args.logprobs:
            logprobs_ceiling(root, server, args, len(page_output))
            return
        if not args.memory_only:
            pdf = make_pdf(root / "ceiling.pdf", args.pages)
            seconds, rss = run_convert(pdf, root / "out1", server, args.concurrency)
            print(
                f"client ceiling: {args.pages} pages in {seconds:.2f} s = "
                f"{args.pages / seconds:.1f} pages/s (concurrency {args.concurrency}, "
                f"{len(page_output)} chars per page); peak RSS {rss / 1024:.0f} MiB"
            )
        if not args.memory_only and args.large:
            poster = make_pdf(root / "poster.pdf", args.large, size=(2182, 3086))
            sent = len(server.requests)
            seconds, rss = run_convert(poster, root / "out4", server, args.concurrency)
            sizes = [r["_image_bytes"] for r in server.requests[sent:]]
            print(
                f"poster pages (2182 x 3086 pt): {args.large} in {seconds:.2f} s = "
                f"{args.large / seconds:.1f} pages/s; {sum(sizes) / len(sizes) / 1e6:.2f} MB of "
                f"image per request; peak RSS {rss / 1024:.0f} MiB"
            )
        small = make_pdf(root / "small.pdf", args.small)
        big = make_pdf(root / "big.pdf", args.big)
        s_small, rss_small = run_convert(
            small, root / "out2", server, args.concurrency, retry=args.retry
        )
        s_big, rss_big = run_convert(big, root / "out3", server, args.concurrency, retry=args.retry)
        print(f"peak RSS, {args.small} pages: {rss_small / 1024:.0f} MiB ({s_small:.1f} s)")
        print(
            f"peak RSS, {args.big} pages: {rss_big / 1024:.0f} MiB ({s_big:.1f} s, "
            f"{args.big / s_big:.1f} pages/s)"
        )
        print(f"ratio {args.big}/{args.small} pages peak RSS: {rss_big / rss_small:.2f}")


def logprobs_ceiling(
    root: Path, server: FakeOpenAIServer, args: argparse.Namespace, chars: int
) -> None:
    """The client ceiling with logprobs on and off, alternated (`--rounds` of each)."""
    pdf = make_pdf(root / "ceiling.pdf", args.pages)
    rates: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for logprobs in (False, True) if round_ % 2 == 0 else (True, False):
            out = root / f"out-{round_}-{logprobs}"
            seconds, rss = run_convert(pdf, out, server, args.concurrency, logprobs)
            rates[logprobs].append(args.pages / seconds)
            asked = server.requests[-1].get("logprobs") is True
            print(
                f"round {round_ + 1}, logprobs {'on ' if logprobs else 'off'}: {args.pages} pages "
                f"in {seconds:.2f} s = {args.pages / seconds:.1f} pages/s; peak RSS "
                f"{rss / 1024:.0f} MiB (asked: {asked})"
            )
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(
        f"client ceiling, median of {args.rounds}: logprobs off {off:.1f} pages/s, on {on:.1f} "
        f"pages/s ({on / off:.2f}x; concurrency {args.concurrency}, {chars} chars per page)"
    )


if __name__ == "__main__":
    main()
