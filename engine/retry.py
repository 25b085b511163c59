"""What to do with a page the triage flagged (engine/triage.py): whether to try it again, how, and
which attempt to keep. Pure rules; the pipeline makes the requests.

- A page flagged `loop` or `garbage` is tried once more with the n-gram processor set harder
  (`STRONGER_NGRAM`: a repeat of a shorter run of tokens, within a longer window, is banned).
  That is what DeepSeek-OCR's users do by hand for the loops of deepseek-ai/DeepSeek-OCR #151.
- Other flags (`truncated`, `empty`, `uncovered`, `low_confidence`) are not retried yet: they
  want the page cut into parts or a region OCRed alone, which is not built; they stay on the page
  for a person to look at.
- The attempt kept is the one with the lowest `score`: the sum of its flags' `SEVERITY`, then the
  most text. A retry never drops a page: the first attempt stays when the retry is no better,
  and a failed retry is not kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .parser import strip_tags
from .results import Flag, FlagKind, PageResult, Strategy
from .tasks import Sampling

__all__ = [
    "MAX_ATTEMPTS",
    "RETRIED_KINDS",
    "SEVERITY",
    "STRONGER_NGRAM",
    "best_attempt",
    "next_strategy",
    "sampling_for",
    "score",
]

#: The most attempts at one page, the first included.
MAX_ATTEMPTS = 2
#: The flags a retry can mend.
RETRIED_KINDS = frozenset({FlagKind.LOOP, FlagKind.GARBAGE})
#: How bad each flag is, for choosing among attempts: an attempt that loops or writes garbage is
#: worse than one cut at the token limit, which is worse than one that missed a region.
SEVERITY = {
    FlagKind.LOOP: 4,
    FlagKind.GARBAGE: 4,
    FlagKind.EMPTY: 4,
    FlagKind.TRUNCATED: 2,
    FlagKind.UNCOVERED: 1,
    FlagKind.LOW_CONFIDENCE: 1,
}
#: The harder n-gram setting (the recipe's is 30 tokens within 90): a loop of a table row or a
#: heading, tens of tokens long and hundreds apart, is inside this window.
STRONGER_NGRAM = (20, 400)


def next_strategy(tried: Sequence[Strategy], flags: Sequence[Flag]) -> Strategy | None:
    """The next way to try a page with `flags` after the attempts `tried`; None: keep it."""
    if len(tried) >= MAX_ATTEMPTS or not any(f.kind in RETRIED_KINDS for f in flags):
        return None
    if Strategy.STRONGER_NGRAM not in tried:
        return Strategy.STRONGER_NGRAM
    return None


def sampling_for(strategy: Strategy, sampling: Sampling) -> Sampling:
    """The run's sampling changed as `strategy` asks."""
    if strategy is Strategy.STRONGER_NGRAM:
        ngram, window = STRONGER_NGRAM
        return dataclasses.replace(
            sampling,
            ngram_size=min(sampling.ngram_size, ngram),
            window_size=max(sampling.window_size, window),
        )
    return sampling


def score(result: PageResult) -> tuple[int, int]:
    """Lower is better: the flags' summed severity, then the most text (as negative length)."""
    return sum(SEVERITY[f.kind] for f in result.flags), -len(strip_tags(result.markdown))


def best_attempt(results: Sequence[PageResult]) -> int:
    """The index of the attempt to keep (the earliest among equals)."""
    return min(range(len(results)), key=lambda i: (score(results[i]), i))
