"""Entry point: `python run.py [overrides]` or `python run.py -m key=a,b ...` for a sweep."""
import hydra
from omegaconf import DictConfig

from mtl_attack.config import register
from mtl_attack.pipeline import run

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    return run(cfg)


if __name__ == "__main__":
    main()
