"""Progress off a terminal: plain lines, not a hidden bar."""
import io
import re

from mtl_attack.progress import ProgressLines


def test_progress_lines_print_counts_and_postfix_and_a_last_line():
    out = io.StringIO()
    bar = ProgressLines(range(4), None, "train", every_s=0.0, stream=out)
    for i in bar:
        bar.set_postfix(loss=f"{i:.1f}")
    lines = out.getvalue().splitlines()
    # One line per step (every_s=0) plus the closing one, each "desc: n/total (pct), seconds[, postfix]".
    assert [re.sub(r", \d+ s", "", ln) for ln in lines] == [
        "train: 1/4 (25%), loss=0.0", "train: 2/4 (50%), loss=1.0", "train: 3/4 (75%), loss=2.0",
        "train: 4/4 (100%), loss=3.0", "train: 4/4 (100%), loss=3.0"]


def test_progress_lines_wait_between_lines():
    out = io.StringIO()
    bar = ProgressLines(None, 10, "rendering", unit="img", every_s=3600.0, stream=out)
    for _ in range(10):
        bar.update(1)
    bar.close()
    bar.close()  # idempotent
    assert [re.sub(r", \d+ s", "", ln) for ln in out.getvalue().splitlines()] == ["rendering: 10/10 (100%)"]
