"""What to do with a page the triage flagged (engine/triage.py): whether to try it again, how, and
which attempt to keep. Pure rules; the pipeline makes the requests.

- A page flagged `loop` or `garbage` is tried once more with the n-gram processor set harder
  (`STRONGER_NGRAM`: a repeat of a shorter run of tokens, within a longer window, is banned).
  That is what DeepSeek-OCR's users do by hand for the loops of deepseek-ai/DeepSeek-OCR #151.
- A dense page (`DENSE_INK_SHARE`) flagged `truncated` or `empty` is cut into overlapping parts,
  each OCRed alone with the run's prompt, their blocks merged in reading order
  (`Strategy.PARTS`, engine/regions.py): a dense page's answer that does not fit max_tokens, or
  that the model gives up on (deepseek-ai/DeepSeek-OCR #194), fits in parts. A page with less
  ink than that cannot hold max_tokens of text: its truncated answer is a loop the detector did
  not catch, which each part would repeat, so it is kept as it is.
- A page flagged `uncovered` (grounding tasks only) has each uncovered region (the flag's box,
  at most `MAX_REGIONS`, the largest first) cropped and OCRed alone with the run's grounding
  prompt, its blocks placed at that region in reading order (`Strategy.REGION`): the table
  columns or the date the grounding prompt skipped (#297, #295).
- `low_confidence` is not retried: the same request would be as unsure; it stays for a person.
- Each strategy is tried at most once, in that order of need, and a page gets at most
  `MAX_ATTEMPTS` attempts: the first, then up to two retries, so that a looping page can get
  its n-gram retry and then, if the retry ran into the token limit, its parts. The next
  strategy is chosen from the flags of the best attempt so far, and a region retry builds on
  that attempt.
- The attempt kept is the one with the lowest `score`: the sum of its flags' `SEVERITY`, then the
  most text. A retry never drops a page: the first attempt stays when the retries are no
  better, and a failed retry is not kept (and ends the retries: the server just failed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .parser import strip_tags
from .results import Flag, FlagKind, PageResult, Strategy
from .tasks import Sampling

__all__ = [
    "DENSE_INK_SHARE",
    "MAX_ATTEMPTS",
    "MAX_REGIONS",
    "RETRIED_KINDS",
    "SEVERITY",
    "STRONGER_NGRAM",
    "best_attempt",
    "next_strategy",
    "sampling_for",
    "score",
    "wants_density",
]

#: The most attempts at one page, the first included: an n-gram retry and a parts or region
#: retry after it (each request of a parts or region attempt counts as one attempt's).
MAX_ATTEMPTS = 3
#: The most uncovered regions of one page OCRed alone (a page with more missed the most).
MAX_REGIONS = 4
#: A page is dense enough to be cut into parts with this share of ink (triage.ink_share): about
#: half of the least inked real page of ../shared/corpus/pages. Measured there: 3.3 % to 6.2 % of
#: ink, 255 to 4,723 tokens of output (the loopback server's tokenizer), at most ~930 tokens per
#: percent of ink (lecture-354); at that rate a page under 2 % holds under 1,900 tokens, a
#: quarter of the default max_tokens (8192).
DENSE_INK_SHARE = 0.02
#: The strategy for each flag a retry can mend, in the order they are tried.
_STRATEGIES: tuple[tuple[frozenset[FlagKind], Strategy], ...] = (
    (frozenset({FlagKind.LOOP, FlagKind.GARBAGE}), Strategy.STRONGER_NGRAM),
    (frozenset({FlagKind.TRUNCATED, FlagKind.EMPTY}), Strategy.PARTS),
    (frozenset({FlagKind.UNCOVERED}), Strategy.REGION),
)
#: The flags a retry can mend.
RETRIED_KINDS = frozenset(kind for kinds, _ in _STRATEGIES for kind in kinds)
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


def next_strategy(
    tried: Sequence[Strategy], flags: Sequence[Flag], *, dense: bool = True
) -> Strategy | None:
    """The next way to try a page after the attempts `tried`, `flags` being the best attempt's
    flags so far and `dense` whether the page has DENSE_INK_SHARE of ink; None: keep it."""
    if len(tried) >= MAX_ATTEMPTS:
        return None
    kinds = {f.kind for f in flags}
    for mended, strategy in _STRATEGIES:
        if strategy is Strategy.PARTS and not dense:
            continue
        if kinds & mended and strategy not in tried:
            return strategy
    return None


def wants_density(tried: Sequence[Strategy], flags: Sequence[Flag]) -> bool:
    """Whether `next_strategy` would cut the page into parts if it is dense (so the page's ink
    share is worth measuring)."""
    return Strategy.PARTS not in tried and any(
        f.kind in (FlagKind.TRUNCATED, FlagKind.EMPTY) for f in flags
    )


def sampling_for(strategy: Strategy, sampling: Sampling) -> Sampling:
    """The run's sampling changed as `strategy` asks (parts and regions: the run's own)."""
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
