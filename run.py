"""Entry point: `python run.py [overrides]` or `python run.py -m key=a,b ...` for a sweep.

A user error (a bad value, a missing file, no GPU) prints one line on stderr and exits with 2.
"""
import sys

import hydra
from omegaconf import DictConfig

from mtl_attack.config import check_command_line, register
from mtl_attack.errors import exit_on_user_error
from mtl_attack.pipeline import run

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@exit_on_user_error("run.py")
def main(cfg: DictConfig):
    return run(cfg)


if __name__ == "__main__":
    exit_on_user_error("run.py")(check_command_line)(sys.argv[1:])  # a wrong type or choice: one line, exit 2
    main()
