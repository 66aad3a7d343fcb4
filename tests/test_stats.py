"""Bootstrap statistics of ARP: hand-computed resamples, degenerate cases, pairing, per-image meters."""
import numpy as np
import pytest
import torch

from mtl_attack import stats
from mtl_attack.scores import arp
from mtl_attack.tasks import DepthMeter, LossMeter, NormalMeter, SegmentationMeter, l1_loss, summed_stats

# One loss-scored task: its metric is the mean per-image loss (lower is better), so ARP is
# the relative loss increase, easy to follow by hand.
SCORERS = {"t": LossMeter(l1_loss).score}
DIRECTIONS = {"t": {"loss": False}}


def loss_stats(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"t": {"loss": values, "count": np.ones_like(values)}}


def test_resample_counts_draw_every_image_n_times_and_repeat_with_the_seed():
    counts = stats.resample_counts(5, n_boot=200, seed=3)
    assert counts.shape == (200, 5) and (counts.sum(1) == 5).all() and (counts >= 0).all()
    assert np.array_equal(counts, stats.resample_counts(5, n_boot=200, seed=3))
    assert not np.array_equal(counts, stats.resample_counts(5, n_boot=200, seed=4))
    # each image is drawn once per resample on average
    assert counts.mean() == pytest.approx(1.0, abs=0.05)


def test_a_known_resample_by_hand():
    """Images 0 and 2 drawn (image 0 twice): clean loss (2*1 + 3) / 3, attacked (2*2 + 9) / 3."""
    clean, attacked = loss_stats([1.0, 5.0, 3.0]), loss_stats([2.0, 5.0, 9.0])
    samples = stats.arp_samples(clean, attacked, SCORERS, DIRECTIONS, np.array([[2, 0, 1], [1, 1, 1]]))
    c, a = 5 / 3, 13 / 3
    assert samples["overall"][0] == pytest.approx(100 * (a - c) / c)  # 160%
    assert samples["per_task"]["t"][0] == pytest.approx(160.0)
    # drawing each image once is the full-data ARP
    assert samples["overall"][1] == pytest.approx(arp({"t": {"loss": 3.0}}, {"t": {"loss": 16 / 3}}, DIRECTIONS)[0])


def test_percentile_interval_known_answer():
    assert stats.percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    assert stats.percentile_interval(np.arange(101.0), level=0.5) == pytest.approx((25.0, 75.0))
    with pytest.raises(ValueError, match="level"):
        stats.percentile_interval(np.arange(3.0), level=1.0)


def test_all_equal_images_give_a_zero_width_interval():
    ci = stats.arp_intervals([(loss_stats([2.0] * 7), loss_stats([3.0] * 7))], SCORERS, DIRECTIONS, n_boot=50)
    assert ci["overall"].as_list() == pytest.approx([50.0, 50.0, 50.0])
    assert not stats.Interval(0.0, 0.0, 0.0).excludes_zero


def test_interval_covers_the_point_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    wide = [(loss_stats(rng.uniform(1, 2, 20)), loss_stats(rng.uniform(1, 4, 20)))]
    narrow = [(loss_stats(rng.uniform(1, 2, 500)), loss_stats(rng.uniform(1, 4, 500)))]
    a = stats.arp_intervals(wide, SCORERS, DIRECTIONS, n_boot=300)["overall"]
    b = stats.arp_intervals(narrow, SCORERS, DIRECTIONS, n_boot=300)["overall"]
    assert a.lo < a.value < a.hi and b.lo < b.value < b.hi
    assert (b.hi - b.lo) < (a.hi - a.lo) / 2


def test_paired_difference_of_an_attack_with_itself_is_exactly_zero():
    rng = np.random.default_rng(1)
    clean, attacked = loss_stats(rng.uniform(1, 2, 30)), loss_stats(rng.uniform(1, 4, 30))
    d = stats.paired_difference([(clean, attacked)], [(clean, attacked)], SCORERS, DIRECTIONS, n_boot=100)
    assert d.as_list() == [0.0, 0.0, 0.0] and stats.verdict(d) == "tie"


def test_pairing_separates_what_separate_intervals_cannot():
    """B hurts every image 1% less than A: the two intervals overlap, the paired one excludes 0."""
    rng = np.random.default_rng(2)
    clean = loss_stats(rng.uniform(1, 2, 40))
    worse = rng.uniform(1.5, 4, 40)
    a, b = loss_stats(worse * 1.01), loss_stats(worse)
    ia = stats.arp_intervals([(clean, a)], SCORERS, DIRECTIONS, n_boot=300)["overall"]
    ib = stats.arp_intervals([(clean, b)], SCORERS, DIRECTIONS, n_boot=300)["overall"]
    assert ia.lo < ib.hi  # overlapping
    d = stats.paired_difference([(clean, a)], [(clean, b)], SCORERS, DIRECTIONS, n_boot=300)
    assert d.value == pytest.approx(ia.value - ib.value) and stats.verdict(d) == "A"
    assert stats.verdict(stats.paired_difference([(clean, b)], [(clean, a)], SCORERS, DIRECTIONS)) == "B"


def test_seeds_average_and_widen_the_interval():
    """Two seeds whose models differ: the value is the mean of the seeds' ARPs, and resampling
    seeds too makes the interval at least as wide as either seed's alone."""
    seed_a = (loss_stats([1.0] * 10), loss_stats([2.0] * 10))  # ARP 100, no image spread
    seed_b = (loss_stats([1.0] * 10), loss_stats([1.5] * 10))  # ARP 50
    ci = stats.arp_intervals([seed_a, seed_b], SCORERS, DIRECTIONS, n_boot=400)["overall"]
    assert ci.value == pytest.approx(75.0)
    assert ci.lo == pytest.approx(50.0) and ci.hi == pytest.approx(100.0)  # both seeds drawn twice happen
    weights = np.array([[2, 0], [1, 1], [0, 2]])
    assert stats._seed_average([np.array([100.0] * 3), np.array([50.0] * 3)], weights).tolist() == [100, 75, 50]


def test_paired_runs_need_the_same_images_and_seeds():
    one = (loss_stats([1.0, 2.0]), loss_stats([2.0, 2.0]))
    other = (loss_stats([1.0, 2.0, 3.0]), loss_stats([2.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="same test images"):
        stats.paired_difference([one], [other], SCORERS, DIRECTIONS)
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_difference([one], [one, one], SCORERS, DIRECTIONS)


@pytest.mark.parametrize("meter,pred,target", [
    (lambda: SegmentationMeter(4), torch.randn(3, 4, 5, 6), torch.randint(0, 4, (3, 10, 12))),
    (NormalMeter, torch.randn(3, 3, 5, 6), torch.nn.functional.normalize(torch.randn(3, 3, 10, 12), dim=1)),
    (DepthMeter, torch.rand(3, 1, 5, 6) + 0.5, torch.rand(3, 1, 10, 12) + 0.5),
    (lambda: LossMeter(l1_loss), torch.rand(3, 1, 5, 6), torch.rand(3, 1, 10, 12)),
])
def test_meters_score_their_per_image_statistics_like_the_split(meter, pred, target):
    """Summing the per-image statistics gives the split's metrics (the median within half a
    coarse bin); counting image 0 twice equals a split that holds it twice."""
    torch.manual_seed(0)
    mask = torch.rand(target.shape[0], *target.shape[-2:]) > 0.2
    m = meter()
    m.update(pred[:2], target[:2], mask[:2])
    m.update(pred[2:], target[2:], mask[2:])
    per_image = m.image_stats()
    assert all(len(v) == 3 for v in per_image.values())
    got, want = m.score(summed_stats(per_image)), m.compute()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=0.05 if k == "angle_median" else 1e-9)
    twice = meter()
    twice.update(torch.cat([pred[:1], pred]), torch.cat([target[:1], target]), torch.cat([mask[:1], mask]))
    got = m.score(summed_stats(per_image, np.array([2, 1, 1])))
    for k, v in twice.compute().items():
        assert got[k] == pytest.approx(v, abs=0.05 if k == "angle_median" else 1e-9)


def test_paired_difference_of_one_task_is_that_tasks_arp_difference():
    # One task: its ARP is the overall ARP, so both ways agree; a known point value by hand.
    clean, a, b = loss_stats([1.0, 1.0]), loss_stats([2.0, 4.0]), loss_stats([1.5, 1.5])
    whole = stats.paired_difference([(clean, a)], [(clean, b)], SCORERS, DIRECTIONS, n_boot=50)
    one = stats.paired_difference([(clean, a)], [(clean, b)], SCORERS, DIRECTIONS, n_boot=50, task="t")
    assert one == whole
    assert one.value == pytest.approx(200.0 - 50.0)  # mean loss 3 vs 1.5 against 1: +200% and +50%


def _two_task_run(clean_t, factor_t, factor_u):
    """(clean, attacked) stats of two loss-scored tasks t and u; the attack multiplies each
    image's loss by the factor of its task."""
    clean_t = np.asarray(clean_t, dtype=np.float64)
    clean_u = clean_t[::-1].copy()
    ones = np.ones_like(clean_t)
    clean = {"t": {"loss": clean_t, "count": ones}, "u": {"loss": clean_u, "count": ones}}
    attacked = {"t": {"loss": clean_t * factor_t, "count": ones}, "u": {"loss": clean_u * factor_u, "count": ones}}
    return clean, attacked


TWO = {"t": LossMeter(l1_loss).score, "u": LossMeter(l1_loss).score}
TWO_DIRECTIONS = {"t": {"loss": False}, "u": {"loss": False}}


def test_transferability_interval_known_ratios_and_paired_difference():
    """Single-t doubles t's losses (ARP 100 on every resample) and raises u's by half (ARP 50):
    transferability 0.5 with a zero-width interval; against a model where u rises by a quarter
    the paired difference is exactly 0.25; two seeds (0.5 and 0.3) average to 0.4."""
    losses = [1.0, 2.0, 4.0, 3.0]
    a, b, c = _two_task_run(losses, 2.0, 1.5), _two_task_run(losses, 2.0, 1.25), _two_task_run(losses, 2.0, 1.3)
    one = stats.transferability_interval([a], TWO, TWO_DIRECTIONS, "t", n_boot=50)
    assert (one.value, one.lo, one.hi) == pytest.approx((0.5, 0.5, 0.5))
    diff = stats.transferability_interval([a], TWO, TWO_DIRECTIONS, "t", runs_b=[b], n_boot=50)
    assert (diff.value, diff.lo, diff.hi) == pytest.approx((0.25, 0.25, 0.25))
    seeds = stats.transferability_interval([a, c], TWO, TWO_DIRECTIONS, "t", n_boot=200)
    assert seeds.value == pytest.approx(0.4) and (seeds.lo, seeds.hi) == pytest.approx((0.3, 0.5))
    # The target task untouched: its ARP is 0, the ratio undefined, the interval decides nothing.
    flat = stats.transferability_interval([_two_task_run(losses, 1.0, 1.5)], TWO, TWO_DIRECTIONS, "t", n_boot=20)
    assert np.isnan(flat.lo) and np.isnan(flat.hi) and not flat.excludes_zero
    with pytest.raises(ValueError, match="same seeds"):
        stats.transferability_interval([a], TWO, TWO_DIRECTIONS, "t", runs_b=[b, c])
