"""What an ensemble job records: each member's ARP on the same images, the paired differences,
how often each member was kept, and where the per-image criterion and ARP disagree.

Pure functions over per-image statistics (``stats[task][name]`` ``[N, ...]``, see
:mod:`mtl_attack.stats`); ARP in percent.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np

from . import stats
from .scores import arp

__all__ = ["per_image_arp", "ensemble_entry", "MEMBER_PREFIX"]

# Key prefix of a member's attacked statistics in a job's stats.npz ("member:dgba_apgd/normal/count").
MEMBER_PREFIX = "member:"
# ARP differences (%) below this are float noise, not a disagreement.
TOLERANCE = 1e-6


def per_image_arp(clean: stats.Stats, attacked: stats.Stats, scorers: Mapping[str, stats.Scorer],
                  directions: Mapping[str, Mapping[str, bool]]) -> np.ndarray:
    """Overall ARP (%) of each image on its own: ``[N]`` (image n's metrics from its statistics only).

    A metric that is 0 on the clean image is left out of that image's ARP (as :func:`arp`
    does, without its warning); an image where no metric is usable gets NaN."""
    n = stats.image_count(clean)
    out = np.empty(n)
    for i in range(n):
        weights = np.zeros(n)
        weights[i] = 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one image often has a metric at 0 (e.g. no pixel within 11.25)
            try:
                out[i] = arp(stats.metrics_of(clean, scorers, weights), stats.metrics_of(attacked, scorers, weights),
                             directions)[0]
            except ValueError:
                out[i] = np.nan
    return out


def ensemble_entry(names: Sequence[str], winner: np.ndarray, clean: stats.Stats, ensemble: stats.Stats,
                   members: Mapping[str, stats.Stats], scorers: Mapping[str, stats.Scorer],
                   directions: Mapping[str, Mapping[str, bool]], criterion: str) -> dict:
    """The record's "ensemble" entry.

    names: the members in order; winner: int ``[N]`` index of the member kept per image;
    clean, ensemble: the clean and the ensemble's attacked statistics; members: name ->
    that member's attacked statistics on the same N images. Returns {"criterion",
    "members", "wins": {name: images}, "winner": [N] names' indexes, "arp": {name:
    {"overall": [v, lo, hi], "per_task": {task: [v, lo, hi]}}}, "difference": {name:
    [ensemble - member, lo, hi]} (paired bootstrap), "strongest_member", "disagreement":
    {"per_image": fraction of images where another member's per-image ARP is higher than the
    kept member's, "dataset": whether the ensemble's ARP is below the strongest member's,
    "beyond_noise": whether that difference's interval lies below 0}}.
    """
    winner = np.asarray(winner, dtype=np.int64)
    member_arp, difference = {}, {}
    for name in names:
        ci = stats.arp_intervals([(clean, members[name])], scorers, directions)
        member_arp[name] = {"overall": ci["overall"].as_list(),
                            "per_task": {t: c.as_list() for t, c in ci["per_task"].items()}}
        difference[name] = stats.paired_difference([(clean, ensemble)], [(clean, members[name])], scorers,
                                                   directions).as_list()
    strongest = max(names, key=lambda n: member_arp[n]["overall"][0])  # first of equals
    per_image = np.stack([per_image_arp(clean, members[n], scorers, directions) for n in names])
    per_image = np.where(np.isnan(per_image), -np.inf, per_image)
    kept = per_image[winner, np.arange(len(winner))]
    # Another member strictly ahead on that image (beyond float noise, ARP in %).
    disagree = per_image.max(0) > kept + TOLERANCE
    gap = difference[strongest]
    return {
        "criterion": criterion,
        "members": list(names),
        "wins": {n: int((winner == k).sum()) for k, n in enumerate(names)},
        "winner": winner.tolist(),
        "arp": member_arp,
        "difference": difference,
        "strongest_member": strongest,
        "disagreement": {"per_image": float(disagree.mean()) if len(winner) else 0.0,
                         "dataset": bool(gap[0] < -TOLERANCE), "beyond_noise": bool(gap[2] < -TOLERANCE)},
    }
