"""engine/ngram_logits.py bans exactly the tokens vLLM's DeepSeek-OCR n-gram processor bans.

Where torch is installed (the GPU machine; not CI: PyPI's Linux torch wheel brings about 2.5 GB
of CUDA wheels with it, so the test extra leaves it out and these tests skip there), the batch
processor runs on random token histories and logits against `recipe_bans`, a plain-Python
transcription of the recipe's rule. Where vLLM is installed too (the GPU machine's payload,
vLLM 0.24.0), it runs beside vLLM's own `NGramPerReqLogitsProcessor` through the same
`BatchUpdate`s, rows added, removed, moved and swapped between decode steps, and the two
processed logits must be equal.

The module is loaded from its file under the name the vLLM process gives it, as the vLLM process
loads it: without the rest of OCRDesk (whose package needs more than torch and vLLM).
"""

from __future__ import annotations

import importlib.util
import math
import random
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (not in the test extra)")

XArgs = dict[str, Any]  # a request's vllm_xargs
MODULE_FILE = Path(__file__).resolve().parents[2] / "engine" / "ngram_logits.py"


def load_module() -> ModuleType:
    name = "ocrdesk_ngram_logits"
    spec = importlib.util.spec_from_file_location(name, MODULE_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ngram = load_module()
#: The batch processor runs on the GPU where there is one (expected logits are made on the CPU).
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def recipe_bans(
    output_ids: list[int], ngram_size: int, window_size: int, whitelist: Iterable[int] = ()
) -> set[int]:
    """The tokens the recipe bans after `output_ids`: a transcription of vLLM 0.24.0's
    vllm/model_executor/models/deepseek_ocr.py lines 112-136 (NoRepeatNGramLogitsProcessor
    .__call__), the same rule at vLLM's main today."""
    if len(output_ids) < ngram_size:
        return set()
    current_prefix = tuple(output_ids[-(ngram_size - 1) :])
    search_start = max(0, len(output_ids) - window_size)
    search_end = len(output_ids) - ngram_size + 1
    banned = set()
    for i in range(search_start, search_end):
        gram = tuple(output_ids[i : i + ngram_size])
        if gram[:-1] == current_prefix:
            banned.add(gram[-1])
    return banned - set(whitelist)


def xargs(size: int, window: int | None = None, whitelist: list[int] | None = None) -> XArgs:
    args: dict[str, Any] = {"ngram_size": size}
    if window is not None:
        args["window_size"] = window
    if whitelist is not None:
        args["whitelist_token_ids"] = whitelist
    return args


def expected(logits: Any, rows: Mapping[int, tuple[list[int], XArgs | None]]) -> Any:
    """`logits` as the recipe leaves them for `rows` (row -> (output, vllm_xargs or None))."""
    out = logits.clone()
    for row, (output, args) in rows.items():
        if not args:
            continue
        banned = recipe_bans(
            output,
            args["ngram_size"],
            args.get("window_size", 100),
            args.get("whitelist_token_ids") or (),
        )
        if banned:
            out[row, sorted(banned)] = -math.inf
    return out


def looping(rng: random.Random, length: int, vocab: int) -> list[int]:
    """A model's loop: a random phrase repeated, with the odd token changed, so windows hold
    long repeats and near-repeats (random tokens alone would almost never repeat 30-grams)."""
    phrase = [rng.randrange(vocab) for _ in range(rng.randrange(1, 40))]
    tokens = [phrase[i % len(phrase)] for i in range(length)]
    for _ in range(rng.randrange(0, 4)):
        if tokens:
            tokens[rng.randrange(len(tokens))] = rng.randrange(vocab)
    return tokens


def random_output(rng: random.Random, vocab: int) -> list[int]:
    if rng.random() < 0.5:
        return [rng.randrange(vocab) for _ in range(rng.randrange(0, 200))]
    return looping(rng, rng.randrange(0, 300), vocab)


def random_args(rng: random.Random, vocab: int) -> XArgs | None:
    roll = rng.random()
    if roll < 0.15:
        return None  # a request without the guard
    if roll < 0.4:
        return xargs(30, 90, [rng.randrange(vocab), rng.randrange(vocab)])  # OCRDesk's default
    window = rng.choice([None, rng.randrange(1, 150)])
    whitelist = rng.choice([None, [], [rng.randrange(vocab) for _ in range(rng.randrange(1, 5))]])
    return xargs(rng.randrange(1, 12), window, whitelist)


# -- the transcription itself ------------------------------------------------------------------


def test_the_transcription_bans_what_the_recipe_is_known_to_ban() -> None:
    # "a b c a b" with 3-grams: "a b c" was seen, the output ends in "a b": c is banned
    assert recipe_bans([1, 2, 3, 1, 2], 3, 100) == {3}
    assert recipe_bans([1, 2, 3, 1, 2], 3, 100, whitelist=[3]) == set()
    # the window starts at L - window_size: "a b c" at 0 is out of a window of 4
    assert recipe_bans([1, 2, 3, 1, 2], 3, 4) == set()
    assert recipe_bans([1, 2], 3, 100) == set()
    # ngram_size 1: the recipe's prefix out[-0:] is the whole output, so nothing is banned
    assert recipe_bans([5, 5, 5], 1, 100) == set()


# -- NGramBatch against the transcription --------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(40))
def test_one_step_bans_what_the_recipe_bans(seed: int, device: str) -> None:
    rng = random.Random(seed)
    vocab = rng.choice([3, 5, 50])
    rows = {row: (random_output(rng, vocab), random_args(rng, vocab)) for row in range(12)}
    batch = ngram.NGramBatch(16, device)
    for row, (output, args) in rows.items():
        batch.add(row, ngram.NGramArgs.from_extra_args(args), output)
    logits = torch.randn(len(rows), vocab, generator=torch.Generator().manual_seed(seed))
    want = expected(logits, rows)
    got = batch.apply(logits.clone().to(device))
    assert torch.equal(got.cpu(), want)


def test_default_setting_bans_the_token_that_repeats_a_30_gram() -> None:
    phrase = list(range(100, 140))  # 40 distinct tokens, then the first 29 again
    output = phrase + phrase[:29]
    batch = ngram.NGramBatch(2, "cpu")
    batch.add(0, ngram.NGramArgs.from_extra_args(xargs(30, 90, [128821, 128822])), output)
    logits = batch.apply(torch.zeros(1, 200))
    assert torch.isinf(logits[0]).nonzero().flatten().tolist() == [phrase[29]]
    assert recipe_bans(output, 30, 90) == {phrase[29]}


def test_the_whitelist_is_exempt() -> None:
    output = [7, 8, 9, 7, 8]
    batch = ngram.NGramBatch(1, "cpu")
    batch.add(0, ngram.NGramArgs.from_extra_args(xargs(3, 100, [9])), output)
    assert not torch.isinf(batch.apply(torch.zeros(1, 10))).any()


def test_rows_without_the_guard_and_rows_past_the_batch_are_untouched() -> None:
    batch = ngram.NGramBatch(4, "cpu")
    batch.add(0, None, [1, 2, 1, 2, 1])
    batch.add(1, ngram.NGramArgs.from_extra_args({"window_size": 5}), [1, 2, 1, 2, 1])
    batch.add(3, ngram.NGramArgs.from_extra_args(xargs(2)), [1, 2, 1, 2, 1])  # beyond 2 rows
    logits = torch.randn(2, 4)
    assert torch.equal(batch.apply(logits.clone()), logits)
    assert len(batch) == 1  # only row 3 is guarded


@pytest.mark.parametrize("device", DEVICES)
def test_stepwise_decoding_with_rows_removed_moved_and_swapped(device: str) -> None:
    """Lists grow between steps (vLLM appends to the same list object); the batch changes."""
    rng = random.Random(7)
    vocab = 6
    batch = ngram.NGramBatch(8, device)
    rows: dict[int, tuple[list[int], XArgs | None]] = {}
    for step in range(300):
        event = rng.random()
        free = [row for row in range(8) if row not in rows]
        if event < 0.08 and free:
            row = rng.choice(free)
            rows[row] = (random_output(rng, vocab), random_args(rng, vocab))
            batch.add(row, ngram.NGramArgs.from_extra_args(rows[row][1]), rows[row][0])
        elif event < 0.12 and rows:
            row = rng.choice(list(rows))
            del rows[row]
            batch.remove(row)
        elif event < 0.18 and len(rows) >= 2:
            a, b = rng.sample(list(rows), 2)
            rows[a], rows[b] = rows[b], rows[a]
            batch.move(a, b, swap=True)
        elif event < 0.22 and rows and free:
            a, b = rng.choice(list(rows)), rng.choice(free)
            rows[b] = rows.pop(a)
            batch.move(a, b, swap=False)
        elif event < 0.25 and len(rows) >= 2:  # one-way onto an occupied row: it is replaced
            a, b = rng.sample(list(rows), 2)
            rows[b] = rows.pop(a)
            batch.move(a, b, swap=False)
        width = max(rows, default=-1) + 1
        logits = torch.randn(width, vocab, generator=torch.Generator().manual_seed(step))
        assert torch.equal(batch.apply(logits.clone().to(device)).cpu(), expected(logits, rows)), (
            step
        )
        for output, _ in rows.values():  # this step's sampled tokens, often a loop's next one
            output.append(
                output[-4] if len(output) >= 4 and rng.random() < 0.7 else rng.randrange(vocab)
            )


def test_a_larger_window_grows_the_ring_and_refills_it() -> None:
    rng = random.Random(3)
    batch = ngram.NGramBatch(4, "cpu")
    small = looping(rng, 400, 5)
    batch.add(0, ngram.NGramArgs.from_extra_args(xargs(4, 20)), small)
    batch.apply(torch.zeros(2, 5))
    big = looping(rng, 700, 5)
    batch.add(1, ngram.NGramArgs.from_extra_args(xargs(9, 600)), big)
    assert batch.capacity >= 600
    logits = torch.randn(2, 5)
    rows = {0: (small, xargs(4, 20)), 1: (big, xargs(9, 600))}
    assert torch.equal(batch.apply(logits.clone()), expected(logits, rows))


def test_the_ring_is_never_longer_than_the_model_context() -> None:
    batch = ngram.NGramBatch(2, "cpu", max_len=1000)
    batch.add(0, ngram.NGramArgs.from_extra_args(xargs(5, 1_000_000)), [1, 2, 3])
    assert batch.capacity == 1024


def test_a_trailing_placeholder_waits_for_its_token() -> None:
    """vLLM's async scheduling leaves -1 for a token still on its way; it is filled before the
    sampler runs, but a list that still ends in one is read without it, never as token -1."""
    output = [1, 2, 3, 1, 2, 3, 1, -1]
    batch = ngram.NGramBatch(1, "cpu")
    batch.add(0, ngram.NGramArgs.from_extra_args(xargs(3, 100)), output)
    logits = batch.apply(torch.zeros(1, 5))
    assert torch.isinf(logits[0]).nonzero().flatten().tolist() == sorted(
        recipe_bans(output[:-1], 3, 100)
    )
    output[-1] = 2
    logits = batch.apply(torch.zeros(1, 5))
    assert torch.isinf(logits[0]).nonzero().flatten().tolist() == sorted(
        recipe_bans(output, 3, 100)
    )


def test_many_rows_in_small_comparison_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ngram, "_MAX_COMPARE", 64)  # forces several blocks of k
    rng = random.Random(11)
    rows = {row: (looping(rng, 250, 4), xargs(rng.randrange(2, 25), 90)) for row in range(6)}
    batch = ngram.NGramBatch(6, "cpu")
    for row, (output, args) in rows.items():
        batch.add(row, ngram.NGramArgs.from_extra_args(args), output)
    logits = torch.randn(6, 4)
    assert torch.equal(batch.apply(logits.clone()), expected(logits, rows))


@pytest.mark.parametrize(
    "extra_args",
    [
        None,
        {},
        {"window_size": 5},
        xargs(30, 90, [1, 2]),
        xargs(0),
        xargs(-3),
        {"ngram_size": "30"},
        xargs(3, 0),
        {"ngram_size": 3, "window_size": 2.5},
        {"ngram_size": 3, "whitelist_token_ids": 5},
    ],
)
def test_validation_refuses_what_the_recipe_refuses(extra_args: XArgs | None) -> None:
    """The recipe's checks (deepseek_ocr.py lines 144-170): positive ints, an iterable list."""
    # the recipe's `extra_args and extra_args.get(...)`: an empty dict is itself the size
    size = extra_args.get("ngram_size") if extra_args else extra_args
    window = extra_args.get("window_size", 100) if extra_args else 100
    whitelist = extra_args.get("whitelist_token_ids") if extra_args else None
    refused = size is not None and (
        not isinstance(size, int)
        or size <= 0
        or not isinstance(window, int)
        or window <= 0
        or (whitelist is not None and not isinstance(whitelist, Iterable))
    )
    if refused:
        with pytest.raises(ValueError):
            ngram.validate_extra_args(extra_args)
    else:
        ngram.validate_extra_args(extra_args)


# -- beside vLLM's own processor -------------------------------------------------------------


def vllm_config(max_num_seqs: int, max_model_len: int = 8192) -> SimpleNamespace:
    return SimpleNamespace(
        scheduler_config=SimpleNamespace(max_num_seqs=max_num_seqs),
        model_config=SimpleNamespace(max_model_len=max_model_len),
    )


@pytest.mark.parametrize("device", DEVICES)
def test_against_vllms_own_processor_through_batch_updates(device: str) -> None:
    pytest.importorskip("vllm", reason="vLLM is not installed (the GPU machine's payload has it)")
    from vllm import SamplingParams
    from vllm.model_executor.models.deepseek_ocr import NGramPerReqLogitsProcessor
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

    assert ngram.NGramBatchLogitsProcessor is not None
    rows_max = 10
    config = vllm_config(rows_max)
    ours = ngram.NGramBatchLogitsProcessor(config, torch.device(device), device == "cuda")
    theirs = NGramPerReqLogitsProcessor(config, torch.device("cpu"), False)
    assert ours.is_argmax_invariant() is theirs.is_argmax_invariant() is False

    rng = random.Random(2024)
    vocab = 7
    outputs: dict[int, list[int]] = {}
    for step in range(400):
        removed: list[int] = []
        added: list[tuple[int, Any, list[int] | None, list[int]]] = []
        moved: list[tuple[int, int, Any]] = []
        free = [row for row in range(rows_max) if row not in outputs]
        if rng.random() < 0.1 and outputs:
            row = rng.choice(list(outputs))
            removed.append(row)
            del outputs[row]
            free.append(row)
        if rng.random() < 0.15 and free:
            row = rng.choice(free)
            if row in removed:  # vLLM's BatchUpdateBuilder.pop_removed: the new one takes it
                removed.remove(row)
            outputs[row] = random_output(rng, vocab)
            params = SamplingParams(extra_args=random_args(rng, vocab))
            added.append((row, params, [0, 1, 2], outputs[row]))
        if rng.random() < 0.1 and len(outputs) >= 2:
            a, b = rng.sample(list(outputs), 2)
            outputs[a], outputs[b] = outputs[b], outputs[a]
            moved.append((a, b, MoveDirectionality.SWAP))
        elif rng.random() < 0.1 and outputs and len(outputs) < rows_max:
            a = rng.choice(list(outputs))
            b = rng.choice([row for row in range(rows_max) if row not in outputs])
            outputs[b] = outputs.pop(a)
            moved.append((a, b, MoveDirectionality.UNIDIRECTIONAL))
        elif rng.random() < 0.05 and len(outputs) >= 2:  # one-way onto a row: it is replaced
            a, b = rng.sample(list(outputs), 2)
            outputs[b] = outputs.pop(a)
            moved.append((a, b, MoveDirectionality.UNIDIRECTIONAL))
        update = None
        if removed or added or moved:
            update = BatchUpdate(
                batch_size=max(outputs, default=-1) + 1, removed=removed, added=added, moved=moved
            )
        ours.update_state(update)
        theirs.update_state(update)
        width = max(outputs, default=-1) + 1
        logits = torch.randn(width, vocab, generator=torch.Generator().manual_seed(step))
        got = ours.apply(logits.clone().to(device)).cpu()
        assert torch.equal(got, theirs.apply(logits.clone())), step
        for output in outputs.values():
            output.append(
                output[-3] if len(output) >= 3 and rng.random() < 0.7 else rng.randrange(vocab)
            )


@pytest.mark.parametrize(
    "extra_args",
    [
        None,
        {},
        xargs(30, 90, [1]),
        xargs(0),
        {"ngram_size": "3"},
        xargs(3, -1),
        {"ngram_size": 3, "whitelist_token_ids": 7},
    ],
)
def test_validation_is_vllms(extra_args: XArgs | None) -> None:
    pytest.importorskip("vllm", reason="vLLM is not installed (the GPU machine's payload has it)")
    from vllm import SamplingParams
    from vllm.model_executor.models.deepseek_ocr import NGramPerReqLogitsProcessor

    params = SamplingParams(extra_args=extra_args)

    def outcome(check: Any) -> str:
        try:
            check(params)
        except ValueError as exc:
            return str(exc)
        return "accepted"

    assert outcome(ngram.NGramBatchLogitsProcessor.validate_params) == outcome(
        NGramPerReqLogitsProcessor.validate_params
    )
