"""gdl.progress: one duration format, a linear estimate, and step lines on the gdl.progress logger."""

import io
import logging
import re
import time

import pytest

from gdl.progress import default_every, format_duration, is_terminal, remaining, report, show_progress


def test_format_duration_and_linear_estimate():
    assert [format_duration(s) for s in (0, 0.44, 9.9, 42.4, 185, 3720)] == ["0.0s", "0.4s", "9.9s", "42s", "3m05s", "1h02m"]
    assert remaining(elapsed=10.0, done=2, total=8) == 30.0  # 10 s / 2 done x 6 to go
    assert remaining(elapsed=10.0, done=0, total=8) is None and remaining(10.0, 3, None) is None


def test_a_string_buffer_is_not_a_terminal_and_the_line_interval_comes_from_the_environment(monkeypatch):
    assert not is_terminal(io.StringIO()) and not is_terminal(object())
    monkeypatch.setenv("GDL_PROGRESS_SECONDS", "5")
    assert default_every() == 5.0
    monkeypatch.setenv("GDL_PROGRESS_SECONDS", "often")
    assert default_every() == 60.0


@pytest.fixture
def progress_logger():
    logger = logging.getLogger("gdl.progress")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_report_lines_are_time_stamped_on_stderr_with_the_elapsed_time(progress_logger, capsys):
    show_progress()
    show_progress()  # a second call adds no second handler
    report("prealign", "step 1/3")
    report("prealign", "rigid fit at blur 0.05", start=time.perf_counter() - 12.3)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\d\d:\d\d:\d\d prealign: step 1/3", lines[0]), lines[0]
    assert re.fullmatch(r"\d\d:\d\d:\d\d prealign: rigid fit at blur 0\.05, 12s", lines[1]), lines[1]
