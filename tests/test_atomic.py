"""The one atomic writer: what it writes, its permissions, and nothing half-written after a failure."""
import json
import os
import stat

import pandas as pd
import pytest

from mtl_attack import atomic


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_json_csv_and_figure_round_trip_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        j = atomic.write_json(tmp_path / "a" / "r.json", {"x": [1, 2.5], "p": tmp_path})
        c = atomic.write_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1])
        png = atomic.write_figure(tmp_path / "f.png", fig)
        plt.close(fig)
    finally:
        os.umask(old)
    assert json.loads(j.read_text()) == {"x": [1, 2.5], "p": str(tmp_path)}  # non-JSON values as str()
    assert j.read_text() == json.dumps({"x": [1, 2.5], "p": str(tmp_path)}, indent=2)
    assert c.read_text() == "a,b\n1,x\n2,y\n"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {_mode(p) for p in (j, c, png)} == {0o644}  # not mkstemp's 0600


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = atomic.write_text(tmp_path / "f.txt", "old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.write_with(path, fail)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
