"""The per-image worst-case ensemble: selection with known answers, invariants, members, records."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtl_attack.attacks import build_attack
from mtl_attack.attacks.ensemble import (DEFAULT_MEMBERS, EnsembleAttack, damage, image_arp, pick_per_image,
                                         resolve_members)
from mtl_attack.batches import TaskLoss
from mtl_attack.attacks.modes import EnsembleCriterion
from mtl_attack.attacks.problem import AttackProblem
from mtl_attack.worst_case import ensemble_entry, per_image_arp

EPS = 0.1


class TwoChannels(torch.nn.Module):
    """Task a reads channel 0, task b channel 1 (so Single-a moves only channel 0)."""

    def forward(self, x):
        return {"a": x[:, :1], "b": x[:, 1:2]}


def square_error(out, target):
    return ((out - target) ** 2).flatten(1).mean(1)


def toy_batch(subset: list[int], n: int = 6):
    """Images at 0.5; on ``subset`` task a starts 0.01 off and b 0.5 off, elsewhere the reverse."""
    x = torch.full((n, 3, 2, 2), 0.5)
    da = torch.tensor([0.01 if i in subset else 0.5 for i in range(n)]).reshape(-1, 1, 1, 1)
    db = torch.tensor([0.5 if i in subset else 0.01 for i in range(n)]).reshape(-1, 1, 1, 1)
    targets = {"a": x[:, :1] - da, "b": x[:, 1:2] - db}
    return x, targets, {"a": square_error, "b": square_error}


def test_ensemble_picks_the_stronger_member_exactly_on_its_images():
    subset = [1, 4]
    x, targets, losses = toy_batch(subset)
    attack = build_attack("ensemble", "dgba", eps=EPS, steps=1, members=["single_a_pgd", "single_b_pgd"],
                          ensemble_criterion="relative")
    assert isinstance(attack, EnsembleAttack)
    x_adv, info = attack(TwoChannels(), x, targets, losses, return_info=True)
    assert info["members"] == ["single_a_pgd", "single_b_pgd"]
    expected = torch.tensor([0 if i in subset else 1 for i in range(6)])
    assert torch.equal(info["winner"], expected)
    # Hand values: one step of eps along the error's sign (errors 0.01 -> 0.11 and 0.5 -> 0.6).
    big, small = (0.11 ** 2 - 0.01 ** 2) / 0.01 ** 2, (0.6 ** 2 - 0.5 ** 2) / 0.5 ** 2
    assert info["damage"][0, 1].item() == pytest.approx(big, rel=1e-4)
    assert info["damage"][1, 1].item() == pytest.approx(small, rel=1e-4)
    assert info["damage"][1, 0].item() == pytest.approx(big, rel=1e-4)
    # The kept image is the winner's: channel 0 moved on the subset, channel 1 elsewhere.
    moved = (x_adv - x).abs().amax((2, 3))
    for i in range(6):
        assert moved[i, 0].item() == pytest.approx(EPS if i in subset else 0.0, abs=1e-6)
        assert moved[i, 1].item() == pytest.approx(0.0 if i in subset else EPS, abs=1e-6)
    assert torch.equal(x_adv, info["candidates"][expected, torch.arange(6)])


def test_ensemble_keeps_every_invariant_of_a_single_attack():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 2, 2)
    x[0] = 0.0
    x[1] = 1.0
    before = x.clone()
    targets = {"a": torch.rand(4, 1, 2, 2), "b": torch.rand(4, 1, 2, 2)}
    losses = {"a": square_error, "b": square_error}
    attack = build_attack("ensemble", "dgba", eps=EPS, steps=2, members=["total_apgd", "single_*_pgd"],
                          apgd_start="reference", restarts=2, ensemble_criterion="relative")
    x_adv = attack(TwoChannels(), x, targets, losses)
    assert torch.equal(x, before)
    assert torch.isfinite(x_adv).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= EPS + 1e-7
    assert [n for n, _ in attack.members(["a", "b"])] == ["total_apgd", "single_a_pgd", "single_b_pgd"]
    assert all(m.restarts == 2 and m.random_start for _, m in attack.members(["a", "b"]))


def _depth_inputs(values):
    """Targets and TaskLosses of depth tasks "a", "b" on one-pixel images (every pixel valid)."""
    from mtl_attack.tasks import depth_task

    targets = {t: (torch.tensor(v).reshape(-1, 1, 1, 1), torch.ones(len(v), 1, 1, dtype=torch.bool))
               for t, v in values.items()}
    return targets, {t: TaskLoss(depth_task(name=t)) for t in values}


def test_image_arp_is_each_images_own_arp():
    targets, losses = _depth_inputs({"a": [1.0, 1.0]})
    clean = {"a": torch.tensor([1.1, 1.1]).reshape(-1, 1, 1, 1)}
    adv = {"a": torch.tensor([1.3, 1.1]).reshape(-1, 1, 1, 1)}
    # Image 0: abs and rel error 0.1 -> 0.3 (+200% each), delta_1 100 -> 0 (1.3 > 1.25: +100%),
    # delta_2 and delta_3 stay 100: ARP = (200 + 200 + 100 + 0 + 0) / 5 = 100. Image 1 unchanged.
    assert image_arp(clean, adv, targets, losses).tolist() == pytest.approx([100.0, 0.0])
    with pytest.raises(ValueError, match="TaskLoss"):
        image_arp(clean, adv, targets, {"a": square_error})


def test_arp_criterion_keeps_each_images_highest_arp():
    subset = [0, 3]
    n = 5
    x = torch.full((n, 3, 1, 1), 0.5)
    # On the subset task a starts 0.01 off (a step of eps multiplies its error by 11), b 0.5 off.
    off = {"a": [0.01 if i in subset else 0.5 for i in range(n)], "b": [0.5 if i in subset else 0.01 for i in range(n)]}
    targets, losses = _depth_inputs({t: [0.5 + d for d in v] for t, v in off.items()})
    attack = build_attack("ensemble", "dgba", eps=EPS, steps=1, members=["single_a_pgd", "single_b_pgd"])
    assert attack.criterion is EnsembleCriterion.arp
    x_adv, info = attack(TwoChannels(), x, targets, losses, return_info=True)
    assert info["winner"].tolist() == [0 if i in subset else 1 for i in range(n)]
    model = TwoChannels()
    for m in range(2):
        independent = image_arp(model(x), model(info["candidates"][m]), targets, losses)
        assert torch.allclose(info["damage"][m].double(), independent)
    assert (info["damage"].max(0).values > 100).all()


def test_absolute_criterion_ranks_by_summed_losses():
    losses = {"a": torch.tensor([1.0, 4.0]), "b": torch.tensor([2.0, 0.0])}
    clean = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([1.0, 1.0])}
    assert torch.allclose(damage(losses, clean, EnsembleCriterion.absolute), torch.tensor([3.0, 4.0]))
    # relative: (1-1)/1 + (2-1)/1 = 1;  (4-2)/2 + (0-1)/1 = 0
    assert torch.allclose(damage(losses, clean), torch.tensor([1.0, 0.0]))


def test_pick_per_image_first_member_wins_ties_and_nan_never_wins():
    scores = torch.tensor([[1.0, float("nan"), 2.0, float("nan")],
                           [1.0, 0.5, 3.0, float("nan")]])
    assert pick_per_image(scores).tolist() == [0, 1, 1, 0]


def test_members_resolve_and_refuse_bad_names():
    assert resolve_members(None, ["s", "n"]) == ["dgba_apgd", "total_apgd", "single_s_apgd", "single_n_apgd"]
    assert DEFAULT_MEMBERS[-1] == "single_*_apgd"
    assert resolve_members(["dgba_pgd", "dgba_pgd", "single_*_pgd"], ["s"]) == ["dgba_pgd", "single_s_pgd"]
    with pytest.raises(ValueError, match="not an attack preset"):
        resolve_members(["dgba_adam"], ["s"])
    with pytest.raises(ValueError, match="WeightedTotal"):
        resolve_members(["weightedtotal_pgd"], ["s"])
    with pytest.raises(ValueError, match="empty"):
        resolve_members([], ["s"])
    with pytest.raises(ValueError, match="only to optimizer 'ensemble'"):
        build_attack("pgd", "dgba", eps=EPS, members=["dgba_pgd"])


def test_progress_counts_gradient_passes_of_each_run():
    seen = []

    class Recorder:
        uses_progress = True

        def __call__(self, out, target, progress=0.0):
            seen.append(progress)
            return square_error(out, target)

    x, targets, _ = toy_batch([0], n=2)
    attack = build_attack("pgd", "total", eps=EPS, steps=4, random_start=True, restarts=2)
    attack(TwoChannels(), x, targets, {"a": Recorder(), "b": square_error})
    # Each run: gradient passes at progress 0, 1/4, 2/4, 3/4; the clean losses (after the first
    # pass, from a random start) at 0; each run's end is scored at the run's last progress.
    assert seen == [0.0, 0.0, 0.25, 0.5, 0.75, 0.75] + [0.0, 0.25, 0.5, 0.75, 0.75]
    problem = AttackProblem(TwoChannels(), x, targets, {"a": square_error}, EPS, steps=3)
    assert problem.progress == 0.0
    problem.passes = 10
    assert problem.progress == pytest.approx(2 / 3)


def test_harder_losses_need_the_projects_task_losses():
    x, targets, losses = toy_batch([0], n=2)
    attack = build_attack("pgd", "total", eps=EPS, steps=1, seg_loss="segpgd")
    with pytest.raises(ValueError, match="attack_inputs"):
        attack(TwoChannels(), x, targets, losses)


def _stats(values):
    """Loss-kind statistics: per-image losses and counts (1 each) ``[N]``."""
    return {"t": {"loss": np.asarray(values, dtype=float), "count": np.ones(len(values))}}


def test_ensemble_entry_counts_wins_and_disagreements():
    from mtl_attack.tasks import SCORERS

    scorers, directions = {"t": SCORERS["loss"]}, {"t": {"loss": False}}
    clean = _stats([1.0, 1.0, 1.0, 1.0])
    members = {"m0": _stats([2.0, 2.0, 1.0, 1.0]), "m1": _stats([1.0, 1.5, 3.0, 3.0])}
    winner = np.array([0, 1, 1, 1])  # image 1: the criterion kept m1 although m0 hurts more there
    ensemble = _stats([2.0, 1.5, 3.0, 3.0])
    entry = ensemble_entry(["m0", "m1"], winner, clean, ensemble, members, scorers, directions, "relative")
    assert entry["wins"] == {"m0": 1, "m1": 3}
    # ARP of a loss metric: relative increase of the mean loss in percent.
    assert entry["arp"]["m0"]["overall"][0] == pytest.approx(50.0)
    assert entry["arp"]["m1"]["overall"][0] == pytest.approx(112.5)
    assert entry["strongest_member"] == "m1"
    assert entry["difference"]["m1"][0] == pytest.approx(137.5 - 112.5)
    assert entry["disagreement"] == {"per_image": 0.25, "dataset": False, "beyond_noise": False}
    assert per_image_arp(clean, members["m0"], scorers, directions).tolist() == pytest.approx([100, 100, 0, 0])
    json.dumps(entry)


def test_runner_job_records_members_and_keeps_each_images_winner(tmp_path):
    from helpers import REPO, run_cli, tiny

    from mtl_attack import records
    from mtl_attack.report import load_results, write_report
    from mtl_attack.worst_case import MEMBER_PREFIX

    out = tmp_path / "job"
    proc = run_cli(["run.py", *tiny("logger=none", "attack=ensemble", "attack.restarts=1",
                                    "attack.members=[dgba_pgd,single_*_pgd]", cache_dir=tmp_path / "cache"),
                    f"hydra.run.dir={out}"], REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = records.read_record(out / records.RECORD_NAME)
    entry = record["ensemble"]
    names = ["dgba_pgd", "single_segment_semantic_pgd", "single_normal_pgd", "single_depth_zbuffer_pgd"]
    assert entry["members"] == names and record["attack"]["name"] == "ensemble"
    assert sum(entry["wins"].values()) == record["stats"]["images"] == len(entry["winner"])
    # The ensemble's per-image statistics are, image by image, those of the member kept there.
    saved = records.read_image_stats(out / records.STATS_NAME)
    for i, k in enumerate(entry["winner"]):
        member = saved[f"{MEMBER_PREFIX}{names[k]}"]
        for task, per_task in saved["attacked"].items():
            for stat, values in per_task.items():
                assert np.array_equal(values[i], member[task][stat][i]), (i, task, stat)
    row = records.flatten(record)
    assert row["ensemble_strongest"] == entry["strongest_member"] and row["member_wins_dgba_pgd"] == entry["wins"]["dgba_pgd"]
    written = write_report(load_results([out]), tmp_path / "report")
    table = (tmp_path / "report" / "ensemble_eps4.md").read_text()
    assert any(p.name == "ensemble_eps4.csv" for p in written)
    assert "single_normal_pgd" in table and "ensemble - strongest" in table
    # The default criterion ranks by each image's own ARP, so it never disagrees with it.
    assert row["ensemble_criterion"] == entry["criterion"] == "arp"
    assert entry["disagreement"]["per_image"] == 0.0
    summary = next(p for p in written if p.suffix == ".md" and "ARP on that image alone" in p.read_text())
    assert "ensemble_criterion=arp" in summary.read_text()
