"""DeepSeek-OCR's n-gram loop guard for a whole vLLM batch at once, on tensors.

vLLM's DeepSeek-OCR recipe names the processor
`vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor`, an `AdapterLogitsProcessor`
that calls `NoRepeatNGramLogitsProcessor.__call__` once per request per decode step, in Python (a
loop over the window building tuples, then one indexing write per row).
With hundreds of pages in flight that loop, not the GPU, sets the pace. `NGramBatchLogitsProcessor`
applies exactly the same rule to every row of the batch with a few tensor operations, against vLLM
V1's batch-level interface (`vllm.v1.sample.logits_processor.LogitsProcessor`).

The rule (vllm/model_executor/models/deepseek_ocr.py, `NoRepeatNGramLogitsProcessor.__call__`, the
same from vLLM 0.11.1 to today): with `L` output tokens (the prompt is not looked at), nothing is
banned while `L < ngram_size`; otherwise every n-gram `out[i : i + ngram_size]` that starts at
`max(0, L - window_size) <= i <= L - ngram_size` and whose first `ngram_size - 1` tokens equal the
last `ngram_size - 1` output tokens bans its last token, unless that token is whitelisted. The
recipe's `ngram_size == 1` bans nothing (its prefix `out[-0:]` is the whole output, never `()`);
kept as it is. Requests without `ngram_size` in their `extra_args` (vllm_xargs) are left alone.

How it is kept per request: each request holds a slot of a preallocated device tensor with the
tail of its output (a ring of `capacity` tokens, enough for the largest window in use). vLLM hands
every request's output list by reference (`BatchUpdate.added`); `apply` copies the tokens added
since the last step into the slots in one host-to-device transfer, so a batch reordering (moved or
swapped rows) changes only the row -> slot map on the host. `apply`, not `update_state`, reads the
lists: under async scheduling vLLM writes the last sampled token over its -1 placeholder only just
before sampling (gpu_input_batch.InputBatch.update_async_output_token_ids).

This module is loaded by the vLLM process itself, from a folder that OCRDesk's local engine puts on
its PYTHONPATH (engine/local_server.py): it imports the standard library, torch and vLLM only,
never the rest of OCRDesk. `NGramBatch` (the rule and the bookkeeping) needs torch alone, so the
tests run it where torch is installed without vLLM.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

try:
    from vllm.v1.sample.logits_processor import (
        BatchUpdate,
        LogitsProcessor,
        MoveDirectionality,
    )
except ImportError:  # outside a vLLM process (tests): NGramBatch still works
    LogitsProcessor = None

__all__ = ["NGramArgs", "NGramBatch", "NGramBatchLogitsProcessor", "validate_extra_args"]

# The vllm_xargs keys OCRDesk sends (engine/tasks.py, Sampling.vllm_xargs; a test keeps the two
# equal) and the recipe's default window when a request gives none.
NGRAM_SIZE = "ngram_size"
WINDOW_SIZE = "window_size"
WHITELIST = "whitelist_token_ids"
DEFAULT_WINDOW = 100

_START_CAPACITY = 128  # tokens kept per request before a larger window asks for more
_MAX_COMPARE = 1 << 24  # booleans one comparison block may hold (rows x window x n-gram)


@dataclass(frozen=True)
class NGramArgs:
    """One request's n-gram setting, read from its `extra_args` the way the recipe reads them."""

    ngram_size: int
    window_size: int
    whitelist: frozenset[int]

    @classmethod
    def from_extra_args(cls, extra_args: Mapping[str, Any] | None) -> NGramArgs | None:
        """The setting of a request, None when it asks for no n-gram guard (no `ngram_size`)."""
        if not extra_args or extra_args.get(NGRAM_SIZE) is None:
            return None
        whitelist = extra_args.get(WHITELIST)
        return cls(
            ngram_size=int(extra_args[NGRAM_SIZE]),
            window_size=int(extra_args.get(WINDOW_SIZE, DEFAULT_WINDOW)),
            whitelist=frozenset(int(token) for token in whitelist) if whitelist else frozenset(),
        )


def validate_extra_args(extra_args: Mapping[str, Any] | None) -> None:
    """Raise ValueError for the arguments the recipe refuses (the same checks, the same words).

    As the recipe's `params.extra_args and params.extra_args.get(...)`, an empty dict is itself
    refused as the `ngram_size` (vLLM's OpenAI server never sends one: it makes it None).
    """
    if extra_args is None:
        return
    ngram_size = extra_args.get(NGRAM_SIZE) if extra_args else extra_args
    if ngram_size is None:
        return
    window_size = extra_args.get(WINDOW_SIZE, DEFAULT_WINDOW)
    whitelist = extra_args.get(WHITELIST)
    if not isinstance(ngram_size, int) or ngram_size <= 0:
        raise ValueError(f"`ngram_size` has to be a strictly positive integer, got {ngram_size}.")
    if not isinstance(window_size, int) or window_size <= 0:
        raise ValueError(f"`window_size` has to be a strictly positive integer, got {window_size}.")
    if whitelist is not None and not isinstance(whitelist, Iterable):
        raise ValueError(
            f"`whitelist_token_ids` has to be a sequence of integers, got {whitelist}."
        )


@dataclass
class _Request:
    """What the host keeps of one guarded request."""

    slot: int
    args: NGramArgs
    output: Sequence[int]  # vLLM's live list of the request's output tokens
    synced: int = 0  # how many of its tokens are in its slot


@dataclass
class _Layout:
    """The guarded rows of the batch as `NGramBatch.apply` sees them, until the batch changes."""

    height: int  # rows of the logits it was made for
    requests: list[_Request]  # in row order
    rows: torch.Tensor  # their logits rows
    slots: torch.Tensor
    sizes: torch.Tensor  # ngram_size
    windows: torch.Tensor  # window_size
    whitelists: torch.Tensor | None  # [rows, longest whitelist], -1 padded; None: none has one
    widest: int  # the widest window, at most the ring's capacity
    largest: int  # the longest n-gram
    all_rows: bool  # every row of the logits is guarded, in order


class NGramBatch:
    """The rule for every row of a batch, with per-request token tails kept on `device`.

    Rows are the logits rows (vLLM's persistent-batch indices); `add`, `remove` and `move`
    follow the batch, `apply` bans the tokens of every guarded row in place.
    """

    def __init__(
        self,
        max_rows: int,
        device: torch.device | str,
        *,
        pin_memory: bool = False,
        max_len: int | None = None,
    ):
        self.device = torch.device(device)
        self.pin_memory = pin_memory
        # No output is longer than the model's context: no ring needs to be either.
        self._max_capacity = 1 << (max_len - 1).bit_length() if max_len else None
        self.capacity = min(_START_CAPACITY, self._max_capacity or _START_CAPACITY)
        self._rows: dict[int, _Request] = {}
        self._free = list(range(max_rows - 1, -1, -1))
        self._slots = max_rows
        self._tokens = torch.zeros((max_rows, self.capacity), dtype=torch.int32, device=device)
        self._whitelists = torch.full((max_rows, 1), -1, dtype=torch.int64, device=device)
        self._layout: _Layout | None = None  # made by apply, dropped by every change

    def __len__(self) -> int:
        return len(self._rows)

    # -- the batch -------------------------------------------------------------------------

    def add(self, row: int, args: NGramArgs | None, output: Sequence[int]) -> None:
        """A request at `row` (replacing whatever was there); `args` None: not guarded."""
        self.remove(row)
        self._layout = None
        if args is None:
            return
        slot = self._take_slot()
        self._rows[row] = _Request(slot, args, output)
        self._ensure_capacity(max(args.window_size, args.ngram_size))
        whitelist = sorted(args.whitelist)
        if len(whitelist) > self._whitelists.shape[1]:
            grown = torch.full(
                (self._slots, len(whitelist)), -1, dtype=torch.int64, device=self.device
            )
            grown[:, : self._whitelists.shape[1]] = self._whitelists
            self._whitelists = grown
        self._whitelists[slot] = -1
        if whitelist:
            self._whitelists[slot, : len(whitelist)] = self._to_device(whitelist)

    def remove(self, row: int) -> None:
        request = self._rows.pop(row, None)
        if request is not None:
            self._free.append(request.slot)
            self._layout = None

    def move(self, source: int, target: int, swap: bool) -> None:
        """`source`'s request goes to `target`: swapped with it, or replacing it (one-way)."""
        moving = self._rows.pop(source, None)
        staying = self._rows.pop(target, None)
        self._layout = None
        if moving is not None:
            self._rows[target] = moving
        if staying is not None:
            if swap:
                self._rows[source] = staying
            else:
                self._free.append(staying.slot)

    # -- the rule --------------------------------------------------------------------------

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Set the banned tokens of every guarded row of `logits` to -inf (in place)."""
        if not self._rows:
            return logits
        layout = self._layout
        if layout is None or layout.height != logits.shape[0]:
            layout = self._layout = self._make_layout(logits.shape[0])
        if not layout.requests:
            return logits
        # The host's work per row and step: its length, and its new token (one, mostly).
        capacity = self.capacity
        lengths: list[int] = []
        new_slots: list[int] = []
        new_places: list[int] = []
        new_tokens: list[int] = []
        for request in layout.requests:
            output = request.output
            length = len(output)
            while length and output[length - 1] < 0:  # a placeholder not filled in (yet)
                length -= 1
            synced = request.synced
            if length == synced + 1:
                new_slots.append(request.slot)
                new_places.append(synced % capacity)
                new_tokens.append(output[synced])
            elif length > synced:
                start = max(synced, length - capacity)
                new_slots += [request.slot] * (length - start)
                new_places += [position % capacity for position in range(start, length)]
                new_tokens += output[start:length]
            request.synced = length
            lengths.append(length)
        count, added = len(lengths), len(new_tokens)
        packed = self._to_device([*lengths, *new_slots, *new_places, *new_tokens])
        if added:
            written = packed[count:].view(3, added)
            self._tokens[written[0], written[1]] = written[2].to(torch.int32)
        # The widest tail any row may ban from (rows narrower than it mask the rest).
        span = min(max(lengths), layout.widest)
        if span >= 2:
            self._ban(logits, layout, packed[:count], span)
        return logits

    def _ban(
        self, logits: torch.Tensor, layout: _Layout, length_t: torch.Tensor, span: int
    ) -> None:
        count = len(layout.requests)
        columns = torch.arange(span, device=self.device)
        # tail[r, j] = out[L - span + j], the last `span` outputs of each row, right-aligned
        positions = length_t[:, None] - span + columns[None, :]
        tail = self._tokens[layout.slots[:, None], positions.remainder(self.capacity)].long()
        # Column j is the token after an n-gram that starts in this row's window at
        # i = L - span + j - (size - 1) >= max(0, L - window): none while min(L, window) < size.
        size_t = layout.sizes
        first = span - torch.minimum(length_t, layout.windows) + size_t - 1
        banned = (columns[None, :] >= first[:, None]) & (size_t[:, None] >= 2)
        # ... and whose size-1 tokens before it equal the last size-1 outputs: compare
        # tail[j - k] with tail[span - k] for k = 1 .. size-1, in blocks that fit in memory.
        largest = min(layout.largest, span)
        block = max(1, _MAX_COMPARE // max(1, count * span))
        for low in range(1, largest, block):
            k = torch.arange(low, min(largest, low + block), device=self.device)
            before = tail[:, (columns[:, None] - k[None, :]).clamp(min=0)]
            suffix = tail[:, (span - k).clamp(min=0)]
            same = before == suffix[:, None, :]
            beyond = k[None, :] >= size_t[:, None]  # past this row's n-gram: not compared
            banned &= (same | beyond[:, None, :]).all(dim=2)
        if layout.whitelists is not None:
            banned &= ~(tail[:, :, None] == layout.whitelists[:, None, :]).any(dim=2)
        banned &= tail < logits.shape[1]  # an index past the logits would stop the engine
        # A token may be banned by one column and not by another: amin makes -inf win whatever
        # the order of the writes, and +inf leaves a logit as it is.
        index = torch.where(banned, tail, 0)
        values = torch.where(banned, -math.inf, math.inf).to(logits.dtype)
        if layout.all_rows:
            logits.scatter_reduce_(1, index, values, reduce="amin")
        else:
            full_index = torch.zeros((logits.shape[0], span), dtype=torch.int64, device=self.device)
            full_values = torch.full(
                (logits.shape[0], span), math.inf, dtype=logits.dtype, device=self.device
            )
            full_index[layout.rows] = index
            full_values[layout.rows] = values
            logits.scatter_reduce_(1, full_index, full_values, reduce="amin")

    def _make_layout(self, height: int) -> _Layout:
        """The guarded rows of a batch of `height` rows, in one order, their constants on the
        device: made again only when the batch changes."""
        pairs = sorted((row, request) for row, request in self._rows.items() if row < height)
        requests = [request for _, request in pairs]
        if not requests:
            return _Layout(height, [], *(torch.empty(0, dtype=torch.int64),) * 4, None, 0, 0, False)
        rows = [row for row, _ in pairs]
        packed = self._to_device(
            [
                *rows,
                *(request.slot for request in requests),
                *(request.args.ngram_size for request in requests),
                *(request.args.window_size for request in requests),
            ]
        ).view(4, len(rows))
        row_t, slot_t, size_t, window_t = packed.unbind(0)
        listed = any(request.args.whitelist for request in requests)
        return _Layout(
            height=height,
            requests=requests,
            rows=row_t,
            slots=slot_t,
            sizes=size_t,
            windows=window_t,
            whitelists=self._whitelists[slot_t] if listed else None,
            widest=min(self.capacity, max(request.args.window_size for request in requests)),
            largest=max(request.args.ngram_size for request in requests),
            all_rows=rows == list(range(height)),
        )

    # -- storage ---------------------------------------------------------------------------

    def _to_device(self, values: list[int]) -> torch.Tensor:
        """One host-to-device copy; a fresh pinned buffer each time, so an asynchronous copy
        never reads a buffer the next step is writing."""
        host = torch.tensor(values, dtype=torch.int64, pin_memory=self.pin_memory)
        return host.to(self.device, non_blocking=self.pin_memory)

    def _take_slot(self) -> int:
        if not self._free:  # more requests than rows: never in vLLM, but never fail for it
            grown = self._slots * 2
            self._tokens = torch.cat([self._tokens, torch.zeros_like(self._tokens)])
            self._whitelists = torch.cat([self._whitelists, torch.full_like(self._whitelists, -1)])
            self._free = list(range(grown - 1, self._slots - 1, -1))
            self._slots = grown
        return self._free.pop()

    def _ensure_capacity(self, needed: int) -> None:
        """Keep at least `needed` tokens a request; a larger ring is refilled from the lists."""
        wanted = 1 << (needed - 1).bit_length()
        if self._max_capacity is not None:
            wanted = min(wanted, self._max_capacity)
        if wanted <= self.capacity:
            return
        self.capacity = wanted
        self._tokens = torch.zeros(
            (self._slots, self.capacity), dtype=torch.int32, device=self.device
        )
        for request in self._rows.values():
            request.synced = 0


if LogitsProcessor is not None:

    class NGramBatchLogitsProcessor(LogitsProcessor):  # type: ignore[misc]
        """vLLM V1 batch-level logits processor: the recipe's n-gram rule for the whole batch.

        Serve with `--logits-processors ocrdesk_ngram_logits:NGramBatchLogitsProcessor` (this
        file on the server's PYTHONPATH as ocrdesk_ngram_logits.py) and send `vllm_xargs`
        `ngram_size`, `window_size`, `whitelist_token_ids` as for the recipe's processor.
        """

        def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool):
            self.batch = NGramBatch(
                int(vllm_config.scheduler_config.max_num_seqs),
                device,
                pin_memory=is_pin_memory,
                max_len=int(vllm_config.model_config.max_model_len),
            )

        @classmethod
        def validate_params(cls, params: Any) -> None:
            validate_extra_args(params.extra_args)

        def is_argmax_invariant(self) -> bool:
            return False  # it bans tokens: greedy sampling must see it

        def update_state(self, batch_update: BatchUpdate | None) -> None:
            if batch_update is None:
                return
            # In vLLM's order: removed, added, moved (interface.BatchUpdate).
            for row in batch_update.removed:
                self.batch.remove(row)
            for row, params, _prompt, output in batch_update.added:
                self.batch.add(row, NGramArgs.from_extra_args(params.extra_args), output)
            for source, target, direction in batch_update.moved:
                self.batch.move(source, target, swap=direction == MoveDirectionality.SWAP)

        def apply(self, logits: torch.Tensor) -> torch.Tensor:
            return self.batch.apply(logits)
