"""The process float mode: denormals flushed in every CPU thread, or in none."""
import subprocess
import sys
import textwrap

import pytest
import torch

from mtl_attack import floats
from mtl_attack.training import training_env

needs_mode = pytest.mark.skipif(not floats.flushing(), reason="this CPU has no flush-to-zero mode")

# Two threads, each with chunks of the smallest float32 denormal (made and read as bits,
# which the float mode does not touch): the fraction of the products denormal * 1.0 that
# stay non-zero, after `setup` ran.
_PROBE = """
import torch
from mtl_attack import floats
torch.set_num_threads(2)
{setup}
tiny = torch.ones(1 << 17, dtype=torch.int32).view(torch.float32)
print(floats.flushing(), (tiny * 1.0).view(torch.int32).ne(0).float().mean().item())
"""


def _probe(setup: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(setup=textwrap.dedent(setup))],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], float(out[1])


@needs_mode
def test_flushing_from_the_start_reaches_every_thread():
    assert _probe("floats.flush_denormals()") == ("True", 0.0)


@needs_mode
def test_flushing_after_the_threads_started_is_switched_back_off():
    # The first parallel op starts the second thread in the default mode: flushing in the
    # main thread alone would flush half the products, so the mode goes back off.
    flushed, kept = _probe("torch.ones(1 << 17).sum()\nassert not floats.flush_denormals()")
    assert (flushed, kept) == ("False", 1.0)


def test_without_flush_denormals_nothing_flushes():
    assert _probe("") == ("False", 1.0)


@needs_mode
def test_the_tests_flush_in_every_thread():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        tiny = torch.ones(1 << 17, dtype=torch.int32).view(torch.float32)
        assert not (tiny * 1.0).view(torch.int32).any()
    finally:
        torch.set_num_threads(before)


def test_the_float_mode_is_in_the_cpu_training_key(monkeypatch):
    from omegaconf import OmegaConf

    train = OmegaConf.create({"threads": 1})
    monkeypatch.setattr(floats, "_flushing", True)
    assert training_env(train, torch.device("cpu")) == {"device": "cpu", "threads": 1, "flush_denormal": True}
    assert training_env(train, torch.device("cuda")) == {"device": "cuda"}  # the CPU's mode is not a GPU's
    monkeypatch.setattr(floats, "_flushing", False)
    # Models trained without it keep the keys they had before the mode existed.
    assert training_env(train, torch.device("cpu")) == {"device": "cpu", "threads": 1}
