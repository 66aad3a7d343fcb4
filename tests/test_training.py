"""Training and the model cache: load instead of retrain, train once, survive damage, clear errors."""
import threading
from pathlib import Path

import pytest
import torch

from helpers import tiny
from mtl_attack.config import compose
from mtl_attack.models.build import build_model, resolve_layout
from mtl_attack.training import checkpoint_path, model_key, multitask_loss, train_model, train_or_load

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def setup(tiny_cfg, tiny_parts):
    return tiny_cfg, tiny_parts.train, tiny_parts.tasks, tiny_parts.layout


def _model(cfg, tasks, layout, head_width=None):
    return build_model("resnet34", layout, tasks, head_width or cfg.backbone.head_width, cfg.seed, Path(cfg.cache_dir),
                       width=cfg.backbone.width)


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_train_then_load_from_cache(setup):
    cfg, train, tasks, layout = setup
    cfg = compose(tiny("seed=1", cache_dir=cfg.cache_dir))
    first = _model(cfg, tasks, layout)
    info1 = train_or_load(first, cfg, layout, tasks, train, torch.device("cpu"), progress=False)
    assert info1["source"] == "trained"
    assert not _same(first, _model(cfg, tasks, layout))  # training changed the weights
    second = _model(cfg, tasks, layout)
    info2 = train_or_load(second, cfg, layout, tasks, train, torch.device("cpu"), progress=False)
    assert info2["source"] == "cache" and info2["path"] == info1["path"]
    assert _same(first, second)


def test_key_covers_what_determines_weights(setup):
    cfg, _, _, layout = setup
    base = checkpoint_path(Path("/c"), model_key(cfg, layout))
    for override in ["train.iterations=4", "seed=3", "backbone.head_width=8", "dataset.synthetic.n_train=13",
                     "dataset.input_size=24", "backbone.width=0.5"]:
        other = compose(tiny(override, cache_dir=cfg.cache_dir))
        assert checkpoint_path(Path("/c"), model_key(other, layout)) != base, override
    # Settings that do not change the weights share the model.
    same = compose(tiny("eps=8", "attack=total_pgd", cache_dir=cfg.cache_dir))
    assert checkpoint_path(Path("/c"), model_key(same, layout)) == base


def test_two_concurrent_callers_train_once(setup):
    cfg, train, tasks, layout = setup
    cfg = compose(tiny("seed=2", cache_dir=cfg.cache_dir))
    models = [_model(cfg, tasks, layout) for _ in range(2)]
    sources = []

    def job(m):
        sources.append(train_or_load(m, cfg, layout, tasks, train, torch.device("cpu"), progress=False)["source"])

    threads = [threading.Thread(target=job, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sources) == ["cache", "trained"]
    assert _same(*models)


def test_damaged_checkpoint_is_retrained(setup, capsys):
    cfg, train, tasks, layout = setup
    cfg = compose(tiny("seed=4", cache_dir=cfg.cache_dir))
    info = train_or_load(_model(cfg, tasks, layout), cfg, layout, tasks, train, torch.device("cpu"), progress=False)
    path = Path(info["path"])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, e.g. a disk that filled up
    again = train_or_load(_model(cfg, tasks, layout), cfg, layout, tasks, train, torch.device("cpu"), progress=False)
    assert again["source"] == "trained"
    assert "damaged" in capsys.readouterr().out
    assert train_or_load(_model(cfg, tasks, layout), cfg, layout, tasks, train, torch.device("cpu"),
                         progress=False)["source"] == "cache"


def test_user_checkpoint_loads_and_mismatch_is_explained(setup, tmp_path):
    cfg, train, tasks, layout = setup
    trained = _model(cfg, tasks, layout)
    train_or_load(trained, cfg, layout, tasks, train, torch.device("cpu"), progress=False)
    ckpt = tmp_path / "mine.pt"
    torch.save({"state_dict": trained.state_dict()}, ckpt)
    user_cfg = compose(tiny(f"model.checkpoint={ckpt}", cache_dir=cfg.cache_dir))
    mine = _model(user_cfg, tasks, layout)
    assert train_or_load(mine, user_cfg, layout, tasks, train, torch.device("cpu"))["source"] == "checkpoint"
    assert _same(mine, trained)
    wider = compose(tiny(f"model.checkpoint={ckpt}", "backbone.head_width=8", cache_dir=cfg.cache_dir))
    with pytest.raises(ValueError, match=r"shape mismatches \(e\.g\. heads\."):
        train_or_load(_model(wider, tasks, layout), wider, layout, tasks, train, torch.device("cpu"))
    other_layout = resolve_layout(compose(["layout=independent"]).layout, 3)
    with pytest.raises(ValueError, match="missing .* keys"):
        train_or_load(_model(cfg, tasks, other_layout), user_cfg, other_layout, tasks, train, torch.device("cpu"))


def test_training_lowers_the_loss_on_a_batch(setup):
    cfg, train, tasks, layout = setup
    model = _model(cfg, tasks, layout)
    batch = torch.utils.data.default_collate([train[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        before, _ = multitask_loss(model(batch["image"]), batch, tasks)
    fit = compose(tiny("train.iterations=15", "train.batch_size=4", cache_dir=cfg.cache_dir))
    sub = torch.utils.data.Subset(train, range(4))
    train_model(model, sub, tasks, fit.train, torch.device("cpu"), seed=0, progress=False)
    with torch.no_grad():
        after, _ = multitask_loss(model(batch["image"]), batch, tasks)
    assert after < before


def test_lr_schedules_known_answers():
    from mtl_attack.training import lr_factor

    assert [lr_factor(i, "step", 10, step=4, gamma=0.5) for i in (0, 3, 4, 8)] == [1.0, 1.0, 0.5, 0.25]
    cosine = [lr_factor(i, "cosine", 12, step=1, gamma=1.0, warmup=2) for i in range(12)]
    assert cosine[:2] == [0.5, 1.0]  # linear warm-up
    assert cosine[2] == 1.0 and cosine[7] == pytest.approx(0.5) and cosine[11] == pytest.approx(0.0245, abs=1e-3)
    with pytest.raises(ValueError, match="train.schedule"):
        lr_factor(0, "linear", 10, 1, 1.0)
