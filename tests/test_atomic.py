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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_job_outputs_follow_the_umask(tmp_path, umask, mode):
    """record.json, error.txt, stats.npz, results tables, cached tensors and the W&B finished marker:
    every writer goes through atomic (or, for cache builds, a plain open), so the umask decides."""
    import numpy as np
    import torch

    from mtl_attack import records
    from mtl_attack.cache import build_once
    from mtl_attack.logger import write_finished_marker

    job = tmp_path / "sweep" / "job"
    old = os.umask(umask)
    try:
        paths = [
            atomic.write_json(job / records.RECORD_NAME, {"status": "done"}),
            atomic.write_text(job / "error.txt", "Traceback ..."),
            records.write_image_stats(job / records.STATS_NAME, {"clean": {"t": {"loss": np.ones(3)}}}, {"t": "loss"}),
            records.write_table(pd.DataFrame({"a": [1]}), tmp_path / "sweep" / records.TABLE_NAME),
            records.write_table(pd.DataFrame({"a": [1]}), tmp_path / "sweep" / "results.parquet"),
            atomic.write_torch(tmp_path / "cache" / "t.pt", {"x": torch.zeros(2)}),
            build_once(tmp_path / "cache" / "m.pt", lambda tmp: torch.save({"x": torch.zeros(2)}, tmp)),
            write_finished_marker(job / "wandb" / "offline-run-x", "done", 0),
        ]
    finally:
        os.umask(old)
    assert {p.name: _mode(p) for p in paths} == {p.name: mode for p in paths}
    assert records.record_state(job) == "done"
