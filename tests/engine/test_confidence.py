"""Per-block confidence from token log-probabilities (issue 12's `low_confidence`): the client asks
for logprobs as vLLM wants them and pairs them with the streamed text, the pipeline gives every
block its mean token probability and flags a page with a block under `LOW_CONFIDENCE`, and the
JSON keeps each block's `"confidence"` (null when the server sent none)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ocrdesk.engine.client import ModelClient, TokenLogprobs
from ocrdesk.engine.parser import parse
from ocrdesk.engine.pipeline import LOOP_FINISH, ConvertOptions, DocumentJob, Pipeline
from ocrdesk.engine.results import FlagKind, PageResult
from ocrdesk.engine.tasks import Sampling
from ocrdesk.engine.triage import LOW_CONFIDENCE, block_confidences
from tests.conftest import CORPUS, MODEL_OUTPUTS, need
from tests.engine.test_pipeline import collect, pool_for
from tests.engine.test_pipeline_triage import finished, recorded_loop
from tests.fakes.openai_server import SURE_LOGPROB, UNSURE_LOGPROB, FakeOpenAIServer, tokenize

PAGE = CORPUS / "pages" / "lecture-015"
# The text of the sixth block (index 5) of lecture-015's real output.
UNSURE = "reelle Zahlen = rationale + irrationale Zahlen"
SURE = math.exp(SURE_LOGPROB)


def entry(token: str, logprob: float) -> dict[str, object]:
    """One `logprobs.content` item as vLLM streams it."""
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}


def test_tokens_that_spell_their_chunk_are_paired_as_sent() -> None:
    pairs = TokenLogprobs()
    assert pairs.feed("Hello", [entry("Hel", -0.1), entry("lo", -0.2)]) == [
        ("Hel", -0.1),
        ("lo", -0.2),
    ]
    assert pairs.feed(" world", [entry(" world", -0.3)]) == [(" world", -0.3)]
    assert pairs.result() == [("Hel", -0.1), ("lo", -0.2), (" world", -0.3)]


def test_a_character_of_several_byte_tokens_gets_the_product_of_their_probabilities() -> None:
    # vLLM decodes each byte token of "€" on its own ("\ufffd") and holds the delta back ("")
    # until the character is whole.
    pairs = TokenLogprobs()
    pairs.feed("5 ", [entry("5", -0.1), entry(" ", -0.1)])
    assert pairs.feed("", [entry("\ufffd", -0.5), entry("\ufffd", -0.25)]) == []
    assert pairs.feed("€.", [entry("\ufffd", -0.25), entry(".", -0.1)]) == [("€.", -1.1)]
    result = pairs.result()
    assert result is not None and "".join(text for text, _ in result) == "5 €."


def test_text_without_a_token_joins_the_next_and_the_pairs_still_spell_the_text() -> None:
    pairs = TokenLogprobs()
    pairs.feed("ab", [entry("a", -0.1)])  # "b" came without a logprob
    pairs.feed("cd", [entry("c", -0.2), entry("d", -0.3)])
    pairs.feed("e", [])  # the last text, no token
    assert pairs.result() == [("a", -0.1), ("bc", -0.2), ("de", -0.3)]


#: Logprobs asked for (off by default: see Sampling.logprobs).
ASKED = Sampling(logprobs=True)


def test_no_logprobs_at_all_gives_none() -> None:
    pairs = TokenLogprobs()
    assert pairs.feed("text", None) == []
    assert pairs.result() is None


def recorded_outputs() -> list[Path]:
    return sorted(MODEL_OUTPUTS.glob("*.txt")) + sorted((CORPUS / "pages").glob("*.raw.txt"))


@pytest.mark.parametrize("path", recorded_outputs(), ids=lambda p: p.name[:24])
def test_every_block_with_text_gets_a_confidence_and_no_other_does(path: Path) -> None:
    """On every recorded output, broken ones too (07's `<|det|>` without coordinates starts a
    block that no closed box announces)."""
    raw = path.read_text(encoding="utf-8")
    tokens = [(token, SURE_LOGPROB) for token in tokenize(raw)]
    blocks = parse(raw, 1000, 1400).blocks
    confidences = block_confidences(tokens, 1000, 1400)
    assert len(confidences) == len(blocks)
    for block, confidence in zip(blocks, confidences, strict=True):
        if block.text.strip():
            assert confidence == pytest.approx(SURE), block
        else:
            assert confidence is None, block


@pytest.mark.parametrize("tokens_per_chunk", [1, 3])
async def test_the_client_asks_for_logprobs_and_returns_them_with_the_text(
    tokens_per_chunk: int,
) -> None:
    raw = need(PAGE.with_suffix(".raw.txt")).read_text(encoding="utf-8")
    with FakeOpenAIServer([raw], tokens_per_chunk=tokens_per_chunk, unsure=[UNSURE]) as server:
        client = ModelClient(server.url)
        seen: list[tuple[str, float]] = []
        completion = await client.complete(
            "data:image/png;base64,iVBORw0KGgo=",
            "p",
            Sampling(logprobs=True),
            on_tokens=seen.extend,
        )
        off = await client.complete(
            "data:image/png;base64,iVBORw0KGgo=", "p", Sampling(logprobs=False)
        )
        await client.close()
        asked, plain = server.requests
    assert (asked["logprobs"], asked["top_logprobs"]) == (True, 0)
    assert "logprobs" not in plain and "top_logprobs" not in plain
    tokens = completion.token_logprobs
    assert tokens is not None and tokens == seen
    assert "".join(text for text, _ in tokens) == completion.text == raw
    assert {lp for _, lp in tokens} == {SURE_LOGPROB, UNSURE_LOGPROB}
    assert off.text == raw and off.token_logprobs is None


async def test_a_block_the_model_was_unsure_of_is_flagged_low_confidence(tmp_path: Path) -> None:
    image = need(PAGE.with_suffix(".jpg"))
    raw = need(PAGE.with_suffix(".raw.txt")).read_text(encoding="utf-8")
    with FakeOpenAIServer([raw], tokens_per_chunk=2, unsure=[UNSURE]) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, ConvertOptions(sampling=ASKED)), [DocumentJob(image)])
        await pool.close()
    (page,) = finished(events)
    confidences = [b.confidence for b in page.blocks]
    low = confidences[5]
    assert page.blocks[5].text.endswith(UNSURE)
    assert low is not None and low < LOW_CONFIDENCE
    assert confidences[-1] is None  # the image block has no text
    others = confidences[:5] + confidences[6:-1]
    assert others and all(c == pytest.approx(SURE) for c in others)
    # the real page and its own output give no other flag
    assert [(f.kind, f.box) for f in page.flags] == [(FlagKind.LOW_CONFIDENCE, page.blocks[5].box)]
    data = page.to_json()
    assert [b["confidence"] for b in data["blocks"]][5] == pytest.approx(low, abs=1e-4)
    assert data["blocks"][-1]["confidence"] is None
    back = PageResult.from_json(data)  # the journal keeps them
    assert [b.confidence for b in back.blocks] == pytest.approx(confidences, abs=1e-4)  # type: ignore[arg-type]


async def test_without_logprobs_blocks_have_no_confidence_and_no_flag(tmp_path: Path) -> None:
    image = need(PAGE.with_suffix(".jpg"))
    raw = need(PAGE.with_suffix(".raw.txt")).read_text(encoding="utf-8")
    options = ConvertOptions(sampling=Sampling(logprobs=False))
    with FakeOpenAIServer([raw], unsure=[UNSURE]) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, options), [DocumentJob(image)])
        await pool.close()
    (page,) = finished(events)
    assert page.blocks and all(b.confidence is None for b in page.blocks)
    assert page.flags == []
    assert all(b["confidence"] is None for b in page.to_json()["blocks"])


async def test_a_stream_closed_at_its_loop_keeps_the_confidences_of_the_text_kept(
    tmp_path: Path,
) -> None:
    loop = recorded_loop()
    image = need(PAGE.with_suffix(".jpg"))
    with FakeOpenAIServer([loop], token_delay=0.0005, tokens_per_chunk=4) as server:
        pool = pool_for(server)
        events = await collect(
            Pipeline(pool, ConvertOptions(retry=False, sampling=ASKED)), [DocumentJob(image)]
        )
        await pool.close()
    (page,) = finished(events)
    assert page.finish_reason == LOOP_FINISH
    texts = [b for b in page.blocks if b.text.strip()]
    assert texts and all(b.confidence == pytest.approx(SURE) for b in texts)


def test_the_cli_asks_for_confidence_only_with_the_flag(tmp_path: Path) -> None:
    import json

    from tests.engine.helpers import make_pdf
    from tests.engine.test_cli import run_cli

    pdf = make_pdf(tmp_path / "one.pdf", 1)
    text = "<|ref|>text<|/ref|><|det|>[[100, 100, 900, 300]]<|/det|>\nA line the model read.\n"
    for flag, asked in (([], False), (["--confidence"], True)):
        out = tmp_path / ("on" if asked else "off")
        with FakeOpenAIServer([text]) as server:
            assert run_cli(str(pdf), "-o", str(out), "--server", server.url, *flag) == 0
            sent = server.requests[0]
        assert ("logprobs" in sent) is asked
        block = json.loads((out / "one" / "one.json").read_text())["pages"][0]["blocks"][0]
        assert (block["confidence"] is not None) is asked
