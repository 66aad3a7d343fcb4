"""Table 5: the second-order term of DGBA's objective against the first, over the attack's perturbation."""
import json

import numpy as np
import pytest
import torch

from helpers import tiny
from mtl_attack.config import compose
from mtl_attack.linearization import linearization_terms, measure, summarize_ratio, write_measurement


class Identity(torch.nn.Module):
    def forward(self, x):
        return {"q": x, "r": x}


def test_terms_on_a_quadratic_loss_are_exact():
    # L_q(x) = sum(2 x + x^2 / 2) over the 4 pixels; at x = 1, L_q = 10, grad 3 per pixel, Hessian 1.
    # J = L_q(x') / L_q(x): first = 4 * 3 * d / 10, second = 1/2 * 4 * d^2 / 10, actual = their sum.
    losses = {"q": lambda out, t: (2 * out + 0.5 * out ** 2).flatten(1).sum(1)}
    x = torch.ones(2, 1, 2, 2, dtype=torch.float64)
    d = torch.full_like(x, 0.1)
    d[1] *= -1
    terms = linearization_terms(Identity(), x, x + d, {"q": None}, losses)
    assert terms["first"].tolist() == pytest.approx([0.12, -0.12])
    assert terms["second"].tolist() == pytest.approx([0.002, 0.002])
    assert terms["actual"].tolist() == pytest.approx([0.122, -0.118])
    assert terms["ratio"].tolist() == pytest.approx([1 / 60, 1 / 60])


def test_the_objective_sums_the_tasks_relative_to_their_clean_losses():
    # Two tasks, one linear (L = sum x, clean 4) and one quadratic (L = sum x^2, clean 4): at x = 1,
    # d = 0.5 everywhere, first = 4*0.5/4 + 4*2*0.5/4 = 1.5, second = 1/2 * 4 * 2 * 0.25 / 4 = 0.25.
    losses = {"q": lambda out, t: out.flatten(1).sum(1), "r": lambda out, t: (out ** 2).flatten(1).sum(1)}
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    terms = linearization_terms(Identity(), x, x + 0.5, {"q": None, "r": None}, losses)
    assert terms["first"].item() == pytest.approx(1.5) and terms["second"].item() == pytest.approx(0.25)
    assert terms["actual"].item() == pytest.approx(1.75)


def test_summary_is_mean_std_min_max():
    s = summarize_ratio(np.array([0.1, 0.2, 0.3, 0.6]))
    assert s == pytest.approx({"images": 4, "mean": 0.3, "std": np.std([0.1, 0.2, 0.3, 0.6], ddof=1),
                               "min": 0.1, "max": 0.6})


def test_measure_on_a_tiny_job_writes_table5(tmp_path):
    cfg = compose(tiny("logger=none", cache_dir=tmp_path / "cache"))
    result = measure(cfg, progress=False)
    per = result["per_image"]
    assert result["job"]["images"] == 6 and result["job"]["attack"] == "dgba_apgd"
    assert np.all(np.isfinite(per["ratio"])) and np.all(per["ratio"] >= 0)
    assert np.allclose(per["ratio"], np.abs(per["second"]) / np.abs(per["first"]))
    paths = write_measurement(result, tmp_path / "out")
    saved = json.loads(paths[0].read_text())
    assert saved["summary"]["mean"] == pytest.approx(float(np.mean(per["ratio"])))
    assert "| ratio | images | mean | std | min | max |" in paths[2].read_text()
