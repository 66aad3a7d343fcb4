"""The process's float mode on the CPU: denormal floats flushed to zero.

Attack gradients reach denormal values (below 1.2e-38 in float32), which some CPUs
compute many times slower (5-7x for a whole attack on an Intel Xeon). The mode is per
thread and a thread inherits it when created, so it must be set before torch starts its
CPU worker threads (the first parallel op); :func:`flush_denormals` checks that every
worker flushes and otherwise leaves the mode off everywhere, so a process never mixes
the two. Flushing changes training's arithmetic, so it is part of a model's cache key
(:func:`key_entry`).
"""
from __future__ import annotations

import torch

_flushing = False


def _every_thread_flushes() -> bool:
    # One chunk per worker thread (the grain of torch's parallel loops is 32768
    # elements) of the smallest denormal, made from its bits (a float constant would be
    # flushed on conversion) and checked as bits (a float comparison would read a kept
    # denormal as 0): a worker that keeps denormals leaves its chunk non-zero.
    n = 32768 * 2 * max(1, torch.get_num_threads())
    tiny = torch.ones(n, dtype=torch.int32).view(torch.float32)
    return not bool((tiny * 1.0).view(torch.int32).any())


def flush_denormals() -> bool:
    """Flush denormal floats to zero in this process; True when every CPU thread now does.

    False on a CPU without the mode, or when torch's worker threads were started before
    the call (then the mode is switched back off, so all threads agree).
    """
    global _flushing
    if _flushing:
        return True
    if not torch.set_flush_denormal(True):
        return False
    if _every_thread_flushes():
        _flushing = True
    else:
        torch.set_flush_denormal(False)
    return _flushing


def flushing() -> bool:
    """Whether :func:`flush_denormals` switched flushing on in this process."""
    return _flushing


def key_entry() -> dict:
    """The model cache key's entry for the float mode of CPU training: {"flush_denormal": True}
    when flushing, else empty (models trained without it keep their keys)."""
    return {"flush_denormal": True} if _flushing else {}
