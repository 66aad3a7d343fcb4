"""The Hydra config: defaults compose, typos fail at compose time with useful messages."""
import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from mtl_attack.config import compose
from mtl_attack.models.build import resolve_layout
from mtl_attack.models.layout import all_shared, independent, layout_by_index


def test_defaults_compose():
    cfg = compose()
    assert cfg.dataset.name == "synth_nyuv2"
    assert cfg.dataset.format.value == "nyuv2"
    assert cfg.backbone.name.value == "resnet34"
    assert cfg.attack.optimizer.value == "apgd" and cfg.attack.objective.value == "dgba"
    assert cfg.eps == 4.0  # pixel units out of 255
    assert cfg.logger.mode == "offline"


@pytest.mark.parametrize("group", ["dataset", "backbone", "layout", "attack", "train", "logger"])
def test_every_option_of_every_group_composes(group):
    from pathlib import Path

    from mtl_attack.config import conf_dir

    from hydra.core.config_store import ConfigStore

    files = {p.stem for p in (Path(conf_dir()) / group).glob("*.yaml")}
    stored = {name.removesuffix(".yaml") for name in ConfigStore.instance().list(group)} if group == "attack" else set()
    options = sorted(files | stored)
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


# ---------------------------------------------------------------- one home for each default and name

_GROUP_SCHEMAS = {"dataset": "DatasetConfig", "backbone": "BackboneConfig", "layout": "LayoutConfig",
                  "train": "TrainConfig", "logger": "LoggerConfig"}


def _schema_defaults(cls) -> dict:
    """Field -> default of a schema dataclass, leaving out MISSING and nested configs."""
    from dataclasses import MISSING as NO_DEFAULT
    from dataclasses import fields, is_dataclass

    out = {}
    for f in fields(cls):
        default = f.default if f.default is not NO_DEFAULT else (
            f.default_factory() if f.default_factory is not NO_DEFAULT else "???")
        if default != "???" and not is_dataclass(default):
            out[f.name] = getattr(default, "value", default)
    return out


@pytest.mark.parametrize("group", sorted(_GROUP_SCHEMAS))
def test_no_option_file_repeats_a_schema_default(group):
    """A value lives in the schema or in the option files, never both (so they cannot drift apart)."""
    from pathlib import Path

    import yaml

    from mtl_attack import config
    from mtl_attack.config import conf_dir

    defaults = _schema_defaults(getattr(config, _GROUP_SCHEMAS[group]))
    for path in sorted((Path(conf_dir()) / group).glob("*.yaml")):
        values = yaml.safe_load(path.read_text()) or {}
        repeated = [k for k, v in values.items() if k in defaults and defaults[k] == v]
        assert not repeated, f"{path.name} repeats schema defaults {repeated}"


def test_top_level_defaults_come_from_the_schema_only():
    from pathlib import Path

    import yaml

    from mtl_attack.config import conf_dir

    conf = yaml.safe_load((Path(conf_dir()) / "config.yaml").read_text())
    assert set(conf) == {"defaults", "hydra"}


def test_neutral_keys_are_the_job_folder_exclusions():
    """One list: the sweep resume ignores exactly what job folder names leave out."""
    from mtl_attack import records
    from mtl_attack.config import NEUTRAL_KEYS, neutral_override_keys

    assert records.NEUTRAL_KEYS is NEUTRAL_KEYS
    cfg = compose(return_hydra_config=True)
    excluded = list(cfg.hydra.job.config.override_dirname.exclude_keys)
    assert excluded == neutral_override_keys()
    assert {k.split(".")[0] for k in excluded} == set(NEUTRAL_KEYS)
    assert {"logger.mode", "logger.group", "logger.project", "logger.entity"} <= set(excluded)


def test_dataset_formats_come_from_the_format_table():
    from mtl_attack.data.formats import FORMATS
    from mtl_attack.data.registry import dataset_config_names, format_of

    with pytest.raises(ConfigCompositionException) as err:
        compose(["dataset.format=nyuv3"])
    assert all(name in str(err.value.__cause__) for name in FORMATS)
    assert {format_of(name) for name in dataset_config_names()} == set(FORMATS)
    assert format_of("synth_nyuv2") == "nyuv2" and format_of("taskonomy") == "taskonomy"
    with pytest.raises(ValueError, match="synth_nyuv2"):
        format_of("nyuv3")
