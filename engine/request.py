"""One image sent to the model and its answer streamed back, watched for a repetition loop.

Both the pipeline's page requests (engine/pipeline.py) and the requests for a region or a part of
a page (engine/regions.py) go through `stream_watched`: the image as a data URL
(`image_data_url`), the answer streamed, and the stream closed as soon as `triage.LoopDetector`
is certain it loops, so the server stops generating what would be thrown away. The text before
the loop is what a caller keeps (`Streamed.kept`); the text as received stays whole
(`Streamed.text`).

This module exists so that engine/regions.py can send images without importing the pipeline
(which imports regions); engine/pipeline.py re-exports `image_data_url` and `LOOP_FINISH`.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from . import triage
from .client import Completion, ModelClient, TokenLogprob
from .tasks import Sampling

__all__ = ["LOOP_FINISH", "Streamed", "image_data_url", "stream_watched"]

#: The finish_reason of an answer OCRDesk closed because it looped (engine/triage.py).
LOOP_FINISH = "loop"


def image_data_url(image: Image.Image, fmt: str = "png", quality: int = 92) -> str:
    """The image as a data URL, the form the OpenAI API takes images in."""
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=quality)
        mime = "image/jpeg"
    else:
        # compress_level 1: the bytes only cross loopback or a LAN; level 6 costs 3-4x the time.
        image.save(buffer, format="PNG", compress_level=1)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


@dataclass
class Streamed:
    """What one watched request brought back.

    `completion` is None when the stream was closed at its loop; `loop` is the detector's
    verdict either way (a loop found in the last deltas of an answer that ended anyway is kept
    too). `tokens`: the (text, logprob) pairs streamed, for a stream closed at its loop (a
    finished one has them in `completion.token_logprobs`)."""

    text: str
    completion: Completion | None
    loop: triage.LoopVerdict | None
    tokens: list[TokenLogprob] = field(default_factory=list)

    @property
    def closed_at_loop(self) -> bool:
        return self.completion is None

    @property
    def finish_reason(self) -> str | None:
        return LOOP_FINISH if self.completion is None else self.completion.finish_reason

    @property
    def end(self) -> int | None:
        """Where the kept text ends in `text` (None: all of it is kept)."""
        if self.completion is None and self.loop is not None:
            return self.loop.start
        return None

    @property
    def kept(self) -> str:
        """The text to parse: all of it, or what came before the loop the stream was closed at."""
        end = self.end
        return self.text if end is None else self.text[:end]

    @property
    def logprobs(self) -> list[TokenLogprob] | None:
        """The tokens' log-probabilities where the server sent them (None: it sent none)."""
        if self.completion is not None:
            return self.completion.token_logprobs
        return self.tokens or None


async def stream_watched(
    client: ModelClient,
    url: str,
    prompt: str,
    sampling: Sampling,
    *,
    on_delta: Callable[[str], None] | None = None,
    on_restart: Callable[[], None] | None = None,
) -> Streamed:
    """Stream the answer to `prompt` about the image at `url`, closing it at a loop.

    `on_delta` gets each piece of text as it comes (before the loop watch sees it); `on_restart`
    is called when the client retried a broken stream and the text starts again. Raises what
    `ModelClient.complete` raises (OCRDeskError); cancelling the caller cancels the request."""
    detector = triage.LoopDetector()
    loop: triage.LoopVerdict | None = None
    pieces: list[str] = []
    tokens: list[TokenLogprob] = []
    request: asyncio.Future[Completion] | None = None

    def delta(text: str) -> None:
        nonlocal loop
        pieces.append(text)
        if on_delta is not None:
            on_delta(text)
        if loop is None and (verdict := detector.feed(text)) is not None:
            loop = verdict
            if request is not None:
                request.cancel()  # closes the HTTP stream: the server stops generating

    def restart() -> None:
        nonlocal detector
        detector = triage.LoopDetector()
        pieces.clear()
        tokens.clear()
        if on_restart is not None:
            on_restart()

    request = asyncio.ensure_future(
        client.complete(
            url, prompt, sampling, on_delta=delta, on_restart=restart, on_tokens=tokens.extend
        )
    )
    try:
        completion = await request
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if loop is None or (task is not None and task.cancelling()):
            raise
        return Streamed("".join(pieces), None, loop, tokens)
    if loop is None:
        loop = detector.finish()  # the last deltas, batched and not yet scanned
    return Streamed(completion.text, completion, loop, tokens)
