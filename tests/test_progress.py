"""gdl.progress: periodic lines outside a terminal, a bar redrawn in place inside one."""

import io
import re

from gdl.progress import Progress, format_duration, remaining, track


def test_format_duration_and_linear_estimate():
    assert [format_duration(s) for s in (0, 42.4, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]
    assert remaining(elapsed=10.0, done=2, total=8) == 30.0
    assert remaining(elapsed=10.0, done=0, total=8) is None and remaining(10.0, 3, None) is None


def test_lines_in_a_log_count_steps_details_elapsed_and_estimate():
    stream = io.StringIO()
    with Progress(4, "prealign", unit="scale", every=0, stream=stream) as progress:
        for scale in (0.4, 0.2, 0.1, 0.05):
            progress.advance(scale=scale)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 and "\r" not in stream.getvalue()  # one a step, one at the end
    assert re.fullmatch(r"prealign: 1/4 scales \(25%\), scale 0\.4, \d+s elapsed, about \d+s left", lines[0]), lines[0]
    assert re.fullmatch(r"prealign: 4/4 scales \(100%\), scale 0\.05, \d+s elapsed", lines[-1]), lines[-1]


def test_lines_are_spaced_in_time_and_the_final_state_is_always_shown():
    stream = io.StringIO()
    list(track(range(1000), "reading", every=3600, stream=stream))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("reading: 1/1000 steps (0%)") and lines[-1].startswith("reading: 1000/1000 steps (100%)") and len(lines) == 2


def test_terminal_bar_redraws_one_line():
    stream = io.StringIO()
    with Progress(None, "compiling", stream=stream, terminal=True) as progress:
        progress.advance(3)
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    assert "compiling: 3 steps" in text
    stream = io.StringIO()
    with Progress(2, "epochs", stream=stream, terminal=True) as progress:
        progress.advance(2)
    assert "epochs [####################] 2/2 steps (100%)" in stream.getvalue()
