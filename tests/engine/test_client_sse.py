"""The client's hand-written SSE decoder, on its own: bytes in, JSON chunks out."""

from __future__ import annotations

import json

import pytest

from ocrdesk.engine.client import SSEDecoder, StreamDecodeError

STREAM = (
    b'data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}\n\n'
    b": a comment line\n\n"
    b"event: message\n"
    b'data: {"choices": [{"delta": {"content": "caf\xc3\xa9 "}}]}\n\n'
    b'data:{"choices": [{"delta": {"content": "<|det|>"}, "finish_reason": "stop"}]}\n\n'
    b'data: {"choices": [], "usage": {"completion_tokens": 3}}\n\n'
    b"data: [DONE]\n\n"
)


def expected() -> list[object]:
    return [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"content": "café "}}]},
        {"choices": [{"delta": {"content": "<|det|>"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"completion_tokens": 3}},
        "[DONE]",
    ]


def test_a_whole_stream_at_once() -> None:
    assert SSEDecoder().feed(STREAM) == expected()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_any_cut_into_pieces_gives_the_same_chunks(size: int) -> None:
    decoder = SSEDecoder()
    got: list[object] = []
    for start in range(0, len(STREAM), size):  # cuts inside UTF-8 sequences too
        got += decoder.feed(STREAM[start : start + size])
    assert got == expected()


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_endings(ending: bytes) -> None:
    stream = STREAM.replace(b"\n", ending)
    assert SSEDecoder().feed(stream) == expected()
    decoder = SSEDecoder()
    got: list[object] = []
    for byte in range(len(stream)):  # a \r\n cut between its two bytes is one line end
        got += decoder.feed(stream[byte : byte + 1])
    assert got == expected()


def test_an_unfinished_line_waits_for_its_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a": ') == []
    assert decoder.feed(b"1}") == []
    assert decoder.feed(b"\n") == [{"a": 1}]
    assert decoder.feed(b"") == []


@pytest.mark.parametrize(
    "line",
    [b"data: <html>502 Bad Gateway</html>", b"data: [1, 2]", b'data: {"cut": '],
)
def test_a_data_line_that_is_no_json_object_raises(line: bytes) -> None:
    with pytest.raises(StreamDecodeError):
        SSEDecoder().feed(line + b"\n\n")


def test_a_long_stream_in_network_sized_pieces() -> None:
    chunk = {"choices": [{"delta": {"content": "word "}, "finish_reason": None}]}
    stream = b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for _ in range(5000))
    decoder = SSEDecoder()
    got: list[object] = []
    for start in range(0, len(stream), 65536):
        got += decoder.feed(stream[start : start + 65536])
    assert got == [chunk] * 5000
