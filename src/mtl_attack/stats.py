"""Uncertainty of ARP: bootstrap intervals over test images (and training seeds), paired differences.

Every job keeps per-image sufficient statistics of each task's metrics (see
:class:`mtl_attack.tasks.Meter`), clean and attacked. A bootstrap resample draws
the N test images with replacement; its metrics are scored from the statistics
summed over the drawn images (an image drawn twice counts twice), so one pass
over the data serves every resample. Clean and attacked metrics of a resample use
the same images, and two attacks on the same model and images share the resamples
(a paired bootstrap), so their ARP difference is far tighter than two separate
intervals suggest.

Seeds: with results of several training seeds (the same test images, one model
per seed), a resample also draws the seeds with replacement and averages the
drawn seeds' ARPs, so the interval covers both the images and the seeds.

Intervals are percentile intervals at ``level`` (0.95). Pure numpy; arrays:
``stats[task][name]`` is ``[N, ...]`` with N images in evaluation order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from .scores import arp

# A task's stats -> metrics, e.g. ``task.meter().score``.
Scorer = Callable[[Mapping[str, np.ndarray]], dict]
Stats = Mapping[str, Mapping[str, np.ndarray]]  # task -> statistic name -> [N, ...]

N_BOOT = 1000
LEVEL = 0.95


def resample_counts(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples with replacement:
    int64 ``[n_boot, n]``, every row summing to ``n``."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one image")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.int64)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``samples`` (NaN-free ``[n_boot]``)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    lo, hi = np.quantile(np.asarray(samples, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def image_count(stats: Stats) -> int:
    """N, the images of a task -> stats mapping (all tasks and statistics must agree)."""
    sizes = {len(v) for per_task in stats.values() for v in per_task.values()}
    if len(sizes) != 1:
        raise ValueError(f"per-image statistics disagree on the number of images: {sorted(sizes)}")
    return sizes.pop()


def metrics_of(stats: Stats, scorers: Mapping[str, Scorer], weights: np.ndarray | None = None) -> dict:
    """task -> metrics of the images counted by ``weights`` (``[N]``; None = each once)."""
    from .tasks import summed_stats

    return {task: scorers[task](summed_stats(per_task, weights)) for task, per_task in stats.items()}


def arp_samples(clean: Stats, attacked: Stats, scorers: Mapping[str, Scorer],
                directions: Mapping[str, Mapping[str, bool]], counts: np.ndarray) -> dict:
    """ARP (%) of each resample: {"overall": [n_boot], "per_task": {task: [n_boot]}}.

    counts: ``[n_boot, N]`` draws per image (:func:`resample_counts`), the same for the
    clean and the attacked statistics (they are the same images).
    """
    from .tasks import summed_stats

    weights = np.asarray(counts, dtype=np.float64)  # float: one BLAS product per statistic

    def resampled(stats: Stats) -> dict:
        return {t: summed_stats({k: np.asarray(v, dtype=np.float64) for k, v in ps.items()}, weights)
                for t, ps in stats.items()}

    def scored(sums: dict, b: int) -> dict:
        return {t: scorers[t]({k: v[b] for k, v in ps.items()}) for t, ps in sums.items()}

    clean_sums, attacked_sums = resampled(clean), resampled(attacked)
    overall = np.empty(len(counts))
    per_task = {t: np.empty(len(counts)) for t in directions}
    for b in range(len(counts)):
        total, tasks = arp(scored(clean_sums, b), scored(attacked_sums, b), directions)
        overall[b] = total
        for t in per_task:
            per_task[t][b] = tasks[t]
    return {"overall": overall, "per_task": per_task}


@dataclass(frozen=True)
class Interval:
    """A point estimate (on all the data) with its bootstrap interval."""

    value: float
    lo: float
    hi: float

    def as_list(self) -> list[float]:
        return [self.value, self.lo, self.hi]

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


def _seed_counts(runs: int, n_boot: int, seed: int) -> np.ndarray:
    """Draws per training seed ``[n_boot, runs]``; one run is always drawn once."""
    return resample_counts(runs, n_boot, seed + 1) if runs > 1 else np.ones((n_boot, 1), dtype=np.int64)


def _point(run: tuple[Stats, Stats], scorers: Mapping[str, Scorer], directions) -> tuple[float, dict]:
    """(overall, per-task) ARP of one run on all its images."""
    clean, attacked = run
    return arp(metrics_of(clean, scorers), metrics_of(attacked, scorers), directions)


def _seed_average(per_seed: Sequence[np.ndarray], seed_counts: np.ndarray) -> np.ndarray:
    """Per resample b: the mean over seeds drawn ``seed_counts[b]`` of ``per_seed[s][b]``."""
    stacked = np.stack(per_seed, 1)  # [n_boot, S]
    return (stacked * seed_counts).sum(1) / seed_counts.sum(1)


def arp_intervals(runs: Sequence[tuple[Stats, Stats]], scorers: Mapping[str, Scorer],
                  directions: Mapping[str, Mapping[str, bool]], n_boot: int = N_BOOT, level: float = LEVEL,
                  seed: int = 0) -> dict:
    """ARP with its interval over images (and seeds, with more than one run).

    runs: one (clean stats, attacked stats) per training seed, all on the same N images.
    Returns {"overall": Interval, "per_task": {task: Interval}}; the value is the mean
    over runs of each run's ARP on all images.
    """
    n = image_count(runs[0][0])
    counts = resample_counts(n, n_boot, seed)
    seed_counts = _seed_counts(len(runs), n_boot, seed)
    samples = [arp_samples(c, a, scorers, directions, counts) for c, a in runs]
    points = [_point(run, scorers, directions) for run in runs]

    def interval(values: list[float], per_seed: list[np.ndarray]) -> Interval:
        lo, hi = percentile_interval(_seed_average(per_seed, seed_counts), level)
        return Interval(float(np.mean(values)), lo, hi)

    return {"overall": interval([p[0] for p in points], [s["overall"] for s in samples]),
            "per_task": {t: interval([p[1][t] for p in points], [s["per_task"][t] for s in samples])
                         for t in directions}}


def paired_difference(runs_a: Sequence[tuple[Stats, Stats]], runs_b: Sequence[tuple[Stats, Stats]],
                      scorers: Mapping[str, Scorer], directions: Mapping[str, Mapping[str, bool]],
                      n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0,
                      task: str | None = None) -> Interval:
    """Overall ARP (or, with ``task``, that task's ARP) of attack A minus attack B, with its
    paired bootstrap interval.

    runs_a, runs_b: per training seed (same order), (clean stats, attacked stats) of A
    and of B on the same model and the same N images; every resample draws the same
    images (and seeds) for both. The value is the mean over seeds of ARP_A - ARP_B.
    """
    if len(runs_a) != len(runs_b):
        raise ValueError(f"paired runs need the same seeds: {len(runs_a)} vs {len(runs_b)}")
    n = image_count(runs_a[0][0])
    if any(image_count(r[0]) != n or image_count(r[1]) != n for r in (*runs_a, *runs_b)):
        raise ValueError("paired runs must hold the same test images")
    counts = resample_counts(n, n_boot, seed)

    def pick(values):
        return values["overall"] if task is None else values["per_task"][task]

    def point(run):
        overall, per_task = _point(run, scorers, directions)
        return overall if task is None else per_task[task]

    diffs = [pick(arp_samples(*a, scorers, directions, counts)) - pick(arp_samples(*b, scorers, directions, counts))
             for a, b in zip(runs_a, runs_b)]
    points = [point(a) - point(b) for a, b in zip(runs_a, runs_b)]
    lo, hi = percentile_interval(_seed_average(diffs, _seed_counts(len(runs_a), n_boot, seed)), level)
    return Interval(float(np.mean(points)), lo, hi)


def _ratio(per_task: Mapping[str, np.ndarray], task: str) -> np.ndarray:
    """Transferability per resample (:func:`mtl_attack.scores.transferability`, vectorised):
    mean over the other tasks' ARP / ``task``'s ARP; NaN where ``task``'s ARP is not positive."""
    own = np.asarray(per_task[task], dtype=np.float64)
    others = np.mean([np.asarray(v, dtype=np.float64) for t, v in per_task.items() if t != task], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(own > 0, others / own, np.nan)


def transferability_interval(runs_a: Sequence[tuple[Stats, Stats]], scorers: Mapping[str, Scorer],
                             directions: Mapping[str, Mapping[str, bool]], task: str,
                             runs_b: Sequence[tuple[Stats, Stats]] | None = None,
                             n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> Interval:
    """Transferability of Single-``task`` (mean ARP of the other tasks / ARP of ``task``,
    paper Table 7) with its interval over images and seeds.

    runs_a: per training seed, (clean stats, stats attacked by Single-``task``) on N images.
    With ``runs_b`` (another model's, same seeds and images), the value is A's minus B's and
    the interval is paired: every resample draws the same images and seeds for both. The
    value is the mean over seeds. lo and hi are NaN when some resample leaves ``task``'s ARP
    not positive (the ratio is undefined there), so the interval decides nothing.
    """
    if runs_b is not None and len(runs_b) != len(runs_a):
        raise ValueError(f"paired runs need the same seeds: {len(runs_a)} vs {len(runs_b)}")
    both = [*runs_a, *(runs_b or [])]
    n = image_count(runs_a[0][0])
    if any(image_count(r[0]) != n or image_count(r[1]) != n for r in both):
        raise ValueError("transferability runs must hold the same test images")
    counts = resample_counts(n, n_boot, seed)

    def per_run(runs):
        samples = [_ratio(arp_samples(*r, scorers, directions, counts)["per_task"], task) for r in runs]
        points = [float(_ratio({t: np.array([v]) for t, v in _point(r, scorers, directions)[1].items()}, task)[0])
                  for r in runs]
        return points, samples

    points, samples = per_run(runs_a)
    if runs_b is not None:
        points_b, samples_b = per_run(runs_b)
        points = [a - b for a, b in zip(points, points_b)]
        samples = [a - b for a, b in zip(samples, samples_b)]
    averaged = _seed_average(samples, _seed_counts(len(runs_a), n_boot, seed))
    lo, hi = (np.nan, np.nan) if np.isnan(averaged).any() else percentile_interval(averaged, level)
    return Interval(float(np.mean(points)), lo, hi)


def verdict(difference: Interval) -> str:
    """"A" when A's ARP is higher beyond doubt (interval above 0), "B" when below, else "tie"."""
    if difference.lo > 0:
        return "A"
    if difference.hi < 0:
        return "B"
    return "tie"
