"""A user's own network through the runner: `model=custom model._target_=...`."""
import os

import pytest
import torch

from helpers import REPO, run_cli, tiny
from mtl_attack import records
from mtl_attack.attacks import build_attack
from mtl_attack.batches import attack_inputs
from mtl_attack.config import compose
from mtl_attack.errors import UserError
from mtl_attack.models.custom import TaskOutputs
from mtl_attack.parts import prepare
from mtl_attack.pipeline import Job, run
from mtl_attack.preflight import preflight
from user_nets import Normalized, TinyMultiTask

NET = "user_nets.TinyMultiTask"
MAPPING = ["+model.outputs.seg=segment_semantic", "+model.outputs.depth=depth_zbuffer"]


def _custom(*extra, cache_dir):
    return compose(tiny("model=custom", f"model._target_={NET}", "+model.width=4", *MAPPING, "logger=none",
                        *extra, cache_dir=cache_dir))


def test_a_user_network_is_trained_attacked_and_recorded(tmp_path):
    cfg = _custom(cache_dir=tmp_path / "cache")
    rec = run(cfg, Job(tmp_path / "job", "custom", "custom"), progress=False)
    assert rec["status"] == "done", rec["error"]
    model = rec["model"]
    expected_params = sum(p.numel() for p in TinyMultiTask(width=4).parameters())
    assert (model["kind"], model["class"], model["args"], model["label"]) == ("custom", NET, {"width": 4},
                                                                              "TinyMultiTask")
    assert model["params_torch"] == expected_params and model["layout"] is None
    assert model["source"] == "trained"
    assert set(rec["arp"]["per_task"]) == {"segment_semantic", "normal", "depth_zbuffer"}
    row = records.flatten(rec)
    assert row["backbone"] == NET and row["model"] == "TinyMultiTask"
    again = run(cfg, Job(tmp_path / "job2", "custom", "custom"), progress=False)
    assert again["model"]["source"] == "cache" and again["metrics"] == rec["metrics"]
    # Other constructor arguments are another model.
    wider = compose(tiny("model=custom", f"model._target_={NET}", "+model.width=6", *MAPPING, "logger=none",
                         cache_dir=tmp_path / "cache"))
    wider = run(wider, Job(tmp_path / "job3", "w", "w"), progress=False)
    assert wider["model"]["source"] == "trained"


def test_a_loaded_user_network_is_attacked_as_loaded(tmp_path):
    net = TinyMultiTask(width=4)
    torch.nn.init.normal_(net.depth.weight)
    path = tmp_path / "mine.pt"
    torch.save(net.state_dict(), path)  # a bare state dict, as users save them
    cfg = _custom("model.train=false", f"model.checkpoint={path}", cache_dir=tmp_path / "cache")
    parts = prepare(cfg, progress=False)
    assert parts.source["source"] == "checkpoint"
    assert torch.equal(parts.model.net.depth.weight, net.depth.weight)
    assert not (tmp_path / "cache" / "models").exists() or not list((tmp_path / "cache" / "models").glob("*.pt"))


def test_a_sweep_of_a_user_network_resumes_and_reports(tmp_path):
    args = ["run.py", "-m", *tiny("model=custom", f"model._target_={NET}", "+model.width=4", *MAPPING,
                                  "logger=wandb", "eps=2,4", "name=mine", cache_dir=tmp_path / "cache"),
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {"PYTHONPATH": str(REPO / "tests") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    first = run_cli(args, REPO, env_extra=env)
    assert first.returncode == 0, first.stderr
    recs = [records.read_record(p) for p in (tmp_path / "sweep").rglob(records.RECORD_NAME)]
    assert sorted(r["status"] for r in recs) == ["done", "done"]
    assert sorted(r["model"]["source"] for r in recs) == ["cache", "trained"]
    again = run_cli(args, REPO, env_extra=env)
    assert again.stdout.count("skip ") == 2
    rep = run_cli(["-m", "mtl_attack.cli", "report", str(tmp_path / "sweep"), "--out", str(tmp_path / "rep")], REPO,
                  env_extra=env)
    assert rep.returncode == 0, rep.stderr
    assert "TinyMultiTask" in (tmp_path / "rep" / "table_arp_eps4.md").read_text()


@pytest.mark.parametrize("mode", ["imagenet", "caffe_bgr"])
def test_an_input_convention_gives_the_attack_of_the_normalization_by_hand(mode, tmp_path):
    from mtl_attack.models.inputs import InputNormalizer

    cfg = _custom(cache_dir=tmp_path / "cache")
    parts = prepare(cfg, progress=False, with_model=False)
    batch = next(iter(torch.utils.data.DataLoader(parts.test, batch_size=4)))
    targets, losses = attack_inputs(batch, parts.tasks)
    net = TinyMultiTask(width=4).eval()
    names = [t.name for t in parts.tasks]
    rename = {"seg": "segment_semantic", "depth": "depth_zbuffer"}
    wrapped = TaskOutputs(net, names, mode, rename).eval()
    by_hand_net = torch.nn.Sequential(InputNormalizer(mode), net) if mode != "imagenet" else Normalized(net)
    by_hand = TaskOutputs(by_hand_net.eval(), names, "unit", rename).eval()
    attack = build_attack("pgd", "dgba", eps=4 / 255, steps=3)
    x = batch["image"]
    torch.testing.assert_close(attack(wrapped, x, targets, losses), attack(by_hand, x, targets, losses),
                               atol=1e-6, rtol=0)


def test_a_missing_task_or_wrong_channels_stop_before_any_work(tmp_path):
    with pytest.raises(UserError, match="lack task 'segment_semantic'.*model.outputs"):
        preflight(compose(tiny("model=custom", f"model._target_={NET}", cache_dir=tmp_path / "c")))
    with pytest.raises(UserError, match="output for task 'normal' has shape \\(1, 2, 8, 8\\).*3 channels"):
        preflight(_custom("+model.normal_channels=2", cache_dir=tmp_path / "c"))
    with pytest.raises(UserError, match="cannot be imported"):
        preflight(compose(tiny("model=custom", "model._target_=no_such_pkg.Net", cache_dir=tmp_path / "c")))
    with pytest.raises(UserError, match="could not be built"):
        preflight(_custom("+model.depth_layers=3", cache_dir=tmp_path / "c"))
    other = tmp_path / "other.pt"
    torch.save(TinyMultiTask(width=6).state_dict(), other)
    with pytest.raises(UserError, match="does not fit user_nets.TinyMultiTask: 9 shape mismatches"):
        preflight(_custom(f"model.checkpoint={other}", cache_dir=tmp_path / "c"))
    assert not (tmp_path / "c").exists()


def test_outputs_and_args_are_given_as_mappings(tmp_path):
    from hydra.errors import ConfigCompositionException

    from mtl_attack.models.custom import constructor_args

    typed = ["model=custom", "model._target_=pkg.Net",
             "model.outputs={segmentation:segment_semantic,depth:depth_zbuffer}", "model.args={width:4}"]
    cfg = compose(typed)
    assert dict(cfg.model.outputs) == {"segmentation": "segment_semantic", "depth": "depth_zbuffer"}
    assert constructor_args(cfg.model) == {"width": 4}
    # A key added beside the mapping joins it; a misspelled field still fails.
    assert dict(compose([*typed, "+model.outputs.n=normal"]).model.outputs)["n"] == "normal"
    with pytest.raises(ConfigCompositionException, match="model.outptus"):
        compose(["model=custom", "model._target_=pkg.Net", "model.outptus={a:b}"])
    printed = run_cli([str(REPO / "run.py"), *typed, "--cfg", "job"], tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert "    segmentation: segment_semantic\n    depth: depth_zbuffer\n" in printed.stdout
    assert "  args:\n    width: 4\n" in printed.stdout


def test_a_package_that_fails_on_its_own_import_is_named(tmp_path, monkeypatch):
    import sys

    from mtl_attack.models.custom import import_target

    pkg = tmp_path / "brokennetpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text("import no_such_dependency_of_nets\n\nclass Net:\n    pass\n")
    (pkg / "raises.py").write_text("raise RuntimeError('needs a GPU')\n")
    (pkg / "fine.py").write_text("class Net:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(UserError) as err:
            preflight(compose(tiny("model=custom", "model._target_=brokennetpkg.nets.Net",
                                   cache_dir=tmp_path / "c")))
        assert str(err.value) == ("model._target_=brokennetpkg.nets.Net: importing brokennetpkg.nets failed: No "
                                  "module named 'no_such_dependency_of_nets' (an import inside the package; install "
                                  "its dependencies, or a version of it that matches your torch/torchvision)")
        with pytest.raises(UserError, match=r"importing brokennetpkg.raises failed \(RuntimeError: needs a GPU\)"):
            import_target("brokennetpkg.raises.Net")
        # Only a package that is not found at all gets the PYTHONPATH advice.
        with pytest.raises(UserError, match="no module named 'no_such_pkg'; put its package on PYTHONPATH"):
            import_target("no_such_pkg.nets.Net")
        with pytest.raises(UserError, match="brokennetpkg has no module 'nope'; check the path"):
            import_target("brokennetpkg.nope.Net")
        with pytest.raises(UserError, match="module brokennetpkg.fine has no 'Nett'; check the class name"):
            import_target("brokennetpkg.fine.Nett")
        assert import_target("brokennetpkg.fine.Net").__name__ == "Net"
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "brokennetpkg"]:
            del sys.modules[name]
