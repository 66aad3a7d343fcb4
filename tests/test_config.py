"""The Hydra config: defaults compose, typos fail at compose time with useful messages."""
import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from mtl_attack.config import compose
from mtl_attack.models.build import resolve_layout
from mtl_attack.models.layout import all_shared, independent, layout_by_index


def test_defaults_compose():
    cfg = compose()
    assert cfg.dataset.name == "synth_nyuv2"
    assert cfg.dataset.kind.value == "nyuv2"
    assert cfg.backbone.name.value == "resnet34"
    assert cfg.attack.optimizer.value == "apgd" and cfg.attack.objective.value == "dgba"
    assert cfg.eps == 4.0  # pixel units out of 255
    assert cfg.logger.mode == "offline"


@pytest.mark.parametrize("group", ["dataset", "backbone", "layout", "attack", "train", "logger"])
def test_every_option_of_every_group_composes(group):
    from pathlib import Path

    from mtl_attack.config import conf_dir

    options = sorted(p.stem for p in (Path(conf_dir()) / group).glob("*.yaml"))
    assert options
    for opt in options:
        cfg = compose([f"{group}={opt}"])
        assert cfg[group] is not None


def test_unknown_key_fails():
    with pytest.raises(ConfigCompositionException, match="dataset.foo"):
        compose(["dataset.foo=1"])


def test_unknown_group_option_names_choices():
    with pytest.raises(MissingConfigException, match="synth_nyuv2"):
        compose(["dataset=nyuv3"])


def test_unknown_optimizer_names_valid_choices():
    with pytest.raises(ConfigCompositionException) as err:
        compose(["attack.optimizer=nope"])
    assert "apgd" in str(err.value.__cause__)


def test_bad_type_fails():
    with pytest.raises(ConfigCompositionException):
        compose(["eps=abc"])


def test_layout_resolution():
    assert resolve_layout(compose().layout, 3) == all_shared(3)
    assert resolve_layout(compose(["layout=independent"]).layout, 3) == independent(3)
    assert resolve_layout(compose(["layout.index=9"]).layout, 3) == layout_by_index(3, 9)
    spec = "[[{0,1,2}],[{0,1,2}],[{1,2},{0}],[{1,2},{0}],[{0},{1},{2}]]"
    assert str(resolve_layout(compose([f"layout.spec='{spec}'"]).layout, 3)).startswith("[[{0, 1, 2}]")
    with pytest.raises(ValueError, match="not both"):
        resolve_layout(compose([f"layout.spec='{spec}'", "layout.index=3"]).layout, 3)
    a = resolve_layout(compose(["layout=random", "layout.seed=5"]).layout, 3)
    b = resolve_layout(compose(["layout=random", "layout.seed=5"]).layout, 3)
    assert a == b
