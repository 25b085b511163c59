"""`ocrdesk doctor --check-server URL`: the reference page sent to a server (the loopback OpenAI
server replaying answers), and the answer's shape judged against the page's real output.

The good answer is exactly the real DeepSeek-OCR output of the reference page (the corpus's
lecture-015.raw.txt, shipped as resources/reference/lecture-015.raw.txt); the bad ones are what
broken servers give: random tokens (dummy weights), a fluent grounded answer of another page (vLLM
issue 39919: "output completely unrelated to input"), mixed alphabets (the same issue), a loop to
the token limit, boxes out of 0..999.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ocrdesk.engine import reference_page
from ocrdesk.engine.cli import main
from ocrdesk.engine.doctor import (
    REFERENCE,
    REFERENCE_MAX_TOKENS,
    Check,
    check_reference_answer,
    check_served_release,
    doctor_exit_code,
    run_checks,
)
from ocrdesk.engine.reference_page import REFERENCE_DIR, judge, load_reference
from tests.conftest import CORPUS
from tests.fakes.openai_server import FakeOpenAIServer

MODEL = "deepseek-ai/DeepSeek-OCR"
KEY = "secret"
PAGES = CORPUS / "pages"


def corpus_page(name: str) -> str:
    path = PAGES / f"{name}.raw.txt"
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared corpus sits beside the checkout)")
    return path.read_text(encoding="utf-8")


def gibberish(seed: int = 7, tokens: int = 600) -> str:
    """A random token string, as a model with dummy weights streams it."""
    rng = random.Random(seed)
    pieces = ["<|ref|>", "<|det|>", "[[", "]]", "ку", "мо", "の", "語", "##", "\\(", "zx", "qj"]
    pieces += [chr(rng.randrange(0x21, 0x7E)) * rng.randint(1, 3) for _ in range(40)]
    return "".join(rng.choice(pieces) for _ in range(tokens))


def serving(*answers: str) -> FakeOpenAIServer:
    return FakeOpenAIServer(list(answers), model=MODEL, api_key=KEY)


async def check(server: FakeOpenAIServer) -> Check:
    return await check_reference_answer(server.url, KEY, MODEL)


def test_the_shipped_reference_is_the_corpus_page_and_its_real_output() -> None:
    reference = load_reference()
    assert reference.answer == corpus_page("lecture-015")
    assert (reference.width, reference.height) == (1280, 720)
    assert reference.image.stat().st_size < 100_000  # it ships in the wheel
    assert reference.data_url().startswith("data:image/jpeg;base64,/9j/")
    assert (REFERENCE_DIR / "SOURCE.md").is_file()


async def test_the_real_answer_of_the_page_passes() -> None:
    reference = load_reference()
    with serving(reference.answer) as server:
        result = await check(server)
        (request,) = server.requests
    assert result.ok, result.detail
    assert result.name == REFERENCE
    assert (
        "10 grounded blocks, 10 of 10 boxes well formed, 100% of the page's words" in result.detail
    )
    # Sent as a page is: the image part, then the family's markdown-with-boxes prompt.
    content = request["messages"][0]["content"]
    assert [part["type"] for part in content] == ["image_url", "text"]
    assert content[1]["text"] == "<|grounding|>Convert the document to markdown."
    assert request["_image_format"] == "jpeg" and request["_images"] == 1
    assert request["max_tokens"] == REFERENCE_MAX_TOKENS
    assert request["vllm_xargs"]["ngram_size"] == 30  # the n-gram processor stays on


async def test_gibberish_fails_and_says_why() -> None:
    with serving(gibberish()) as server:
        result = await check(server)
    assert not result.ok and result.required
    assert "not about this page" in result.detail
    assert "letters of scripts the page does not use" in result.detail
    assert "known-good range" in result.fix and "!=0.19.*" in result.fix
    assert "--load-format dummy" in result.fix


async def test_a_fluent_answer_about_another_page_fails() -> None:
    # vLLM issue 39919: well-formed grounded text, but of something else.
    result_shape = judge(corpus_page("lecture-024"), load_reference(), "stop")
    assert result_shape.blocks > 10 and result_shape.malformed == 0
    with serving(corpus_page("lecture-024")) as server:
        result = await check(server)
    assert not result.ok
    assert "not about this page" in result.detail and "malformed" not in result.detail


async def test_mixed_alphabets_fail_even_with_the_page_words_in() -> None:
    mixed = (
        load_reference().answer + "\n\nЕсть много вариантов Lorem Ipsum, но это 日本語の文章です"
    )
    with serving(mixed) as server:
        result = await check(server)
    assert not result.ok
    assert "cyrillic" in result.detail and "cjk" in result.detail
    assert "not about this page" not in result.detail


async def test_an_answer_that_runs_to_the_token_limit_fails() -> None:
    looping = load_reference().answer + "\\begin{pmatrix} 1 & 0 \\\\ " * 4000
    with serving(looping) as server:
        result = await check(server)
    assert not result.ok and "ran on to the token limit" in result.detail


async def test_boxes_outside_0_999_fail() -> None:
    def past_999(found: re.Match[str]) -> str:
        return f"[[{int(found.group(1)) + 1000}, "

    out_of_range = re.sub(r"\[\[(\d+), ", past_999, load_reference().answer)
    with serving(out_of_range) as server:
        result = await check(server)
    assert not result.ok and "10 of 10 boxes malformed" in result.detail


async def test_no_grounding_fails() -> None:
    plain = re.sub(r"<\|ref\|>.*?<\|/det\|>\n?", "", load_reference().answer)
    with serving(plain) as server:
        result = await check(server)
    assert not result.ok and "no grounding tags" in result.detail
    assert "not about this page" not in result.detail  # the words are all there


async def test_the_doctor_runs_it_after_the_server_checks() -> None:
    with serving(gibberish()) as server:
        checks = await run_checks(
            model=None, server=server.url, api_key=KEY, vllm=None, check_answer=True
        )
        assert [c.name for c in checks][-2:] == ["server", REFERENCE]
        assert doctor_exit_code(checks) == 1
        # Without check_answer nothing is sent; with a wrong key nothing is either.
        await run_checks(model=None, server=server.url, api_key=KEY, vllm=None)
        await run_checks(model=None, server=server.url, api_key="no", vllm=None, check_answer=True)
        assert len(server.requests) == 1


def test_the_cli_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(load_reference().answer) as server:
        assert main(["doctor", "--check-server", server.url, "--api-key", KEY]) == 0
        assert f"{REFERENCE}" in capsys.readouterr().out
        server.set_outputs([gibberish()])
        assert main(["doctor", "--check-server", server.url, "--api-key", KEY]) == 1
        out = capsys.readouterr().out
    assert "[FAIL]" in out and "not about this page" in out


# -- the release a server says it runs ------------------------------------------------------------


@pytest.fixture
def version_server() -> Iterator[tuple[str, dict[str, object]]]:
    """A stand-in for vLLM's GET /version (vLLM answers {"version": "0.19.0"} beside /v1)."""
    answer: dict[str, object] = {"status": 200, "body": {"version": "0.19.0"}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = int(str(answer["status"])) if self.path == "/version" else 404
            body = json.dumps(answer["body"]).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", answer
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_a_server_that_runs_vllm_0_19_is_named(
    version_server: tuple[str, dict[str, object]],
) -> None:
    url, answer = version_server
    (found,) = await check_served_release(url, {}, MODEL)
    assert not found.ok and "vLLM 0.19.0 answers DeepSeek-OCR with gibberish" in found.detail
    assert "!=0.19.*" in found.fix
    answer["body"] = {"version": "0.24.0"}
    assert await check_served_release(url, {}, MODEL) == []
    answer["status"] = 404  # not a vLLM (or one without /version): nothing to say
    assert await check_served_release(url, {}, MODEL) == []
    answer.update(status=200, body=["not", "an", "object"])
    assert await check_served_release(url, {}, MODEL) == []


async def test_a_missing_reference_page_is_said_not_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(reference_page, "REFERENCE_DIR", tmp_path)  # an install without it
    with serving(gibberish()) as server:
        result = await check(server)
        assert server.requests == []
    assert not result.ok and "not installed" in result.detail and "reinstall" in result.fix
