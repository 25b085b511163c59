"""tests/conftest.py's log check: an `ocrdesk` logger's WARNING-or-worse record fails the test
that caused it, unless the test allows it (`allow_log`) or reads the records itself (`caplog`)."""

from __future__ import annotations

import logging

import pytest

from tests import conftest


def test_a_logged_warning_is_kept_for_the_check() -> None:
    logging.getLogger("ocrdesk.engine.client").warning("canary: %s", "an unexpected warning")
    logging.getLogger("ocrdesk.gui.controller").info("not a warning")
    logging.getLogger("somebody.else").warning("not the app's")
    assert [r.getMessage() for r in conftest._warnings.records] == ["canary: an unexpected warning"]
    conftest._warnings.records.clear()  # the canary is taken back out: the test passes


def test_allowed_patterns_leave_out_what_they_match() -> None:
    records = [
        logging.makeLogRecord({"msg": "the server at %s is gone", "args": ("x",)}),
        logging.makeLogRecord({"msg": "something else"}),
    ]
    left = conftest.unexpected_records(records, [r"^the server at \S+ is gone$"])
    assert [r.getMessage() for r in left] == ["something else"]


@pytest.mark.allow_log(r"^an expected warning$")
def test_an_allowed_warning_passes() -> None:
    logging.getLogger("ocrdesk").warning("an expected warning")


def test_a_test_that_reads_caplog_checks_its_records_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logging.getLogger("ocrdesk").error("read by the test")
    assert [r.getMessage() for r in caplog.records] == ["read by the test"]
