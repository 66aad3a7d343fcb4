"""Bad values a new user types: each stops before any work with one line (exit status 2 from run.py)."""
import pytest

from helpers import REPO, run_cli
from mtl_attack.config import check_command_line, compose
from mtl_attack.errors import UserError
from mtl_attack.preflight import preflight


@pytest.mark.parametrize("override, words", [
    ("attack.apgd_rho=2", "attack.apgd_rho=2.0 must be a finite number [0, 1] (default 0.75)"),
    ("attack.apgd_momentum=-0.1", "attack.apgd_momentum=-0.1 must be a finite number [0, 1]"),
    ("attack.mim_decay=-1", "attack.mim_decay=-1.0 must be a finite number >= 0 (default 1.0)"),
    ("attack.saga_lr=0", "attack.saga_lr=0.0 must be a finite number > 0 (default 10.0)"),
    ("attack.rel_stepsize=-1", "attack.rel_stepsize=-1.0 must be a finite number > 0"),
    ("dataset.input_size=100000", "dataset.input_size=100000 needs"),
    ("cache_dir=/proc/nope", "cache_dir=/proc/nope: cannot write there"),
])
def test_preflight_refuses_a_value_out_of_range_in_one_line(override, words):
    with pytest.raises(UserError) as err:
        preflight(compose([override, "logger=none"]))
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("args, words", [
    (["attack.steps=abc"], "attack.steps=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    (["attack.precision=fp8"], "attack.precision=fp8: Invalid value 'fp8', expected one of [fp32, tf32, bf16]"),
    (["-m", "eps=1,abc"], "eps=abc: Value 'abc' of type 'str' could not be converted to Float"),
    (["attack=dgba_pdg"], "attack=dgba_pdg: In 'config': Could not find 'attack/dgba_pdg' Available options"),
    (["dataset.tasks={s:{kind:segmentaton,classes:3}}"], "Invalid value 'segmentaton', expected one of [segmentation"),
])
def test_a_wrong_type_or_choice_is_one_line(args, words):
    with pytest.raises(UserError) as err:
        check_command_line(args)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_run_py_says_it_in_one_line_with_status_2(tmp_path):
    out = run_cli([str(REPO / "run.py"), "attack.steps=abc", "logger=none"], cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == ("run.py: error: attack.steps=abc: Value 'abc' of type 'str' could not be "
                                  "converted to Integer")
    assert check_command_line(["-m", "attack=dgba_pgd,total_pgd", "eps=1,2", "hydra.run.dir=x"]) is None
