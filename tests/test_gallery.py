"""Figure 7 (`mtl-attack examples`): attacks by eps for chosen test images, predictions in colour."""
import io

import pytest
from PIL import Image

from helpers import tiny
from mtl_attack.config import compose
from mtl_attack.errors import UserError
from mtl_attack.gallery import default_attacks, gallery


def test_default_attacks_are_single_x_total_and_dgba():
    assert default_attacks(["a", "b"], "pgd") == ["single_a_pgd", "single_b_pgd", "total_pgd", "dgba_pgd"]


def test_a_grid_per_image_with_a_block_per_attack(tmp_path):
    cfg = compose(tiny("logger=none", cache_dir=tmp_path / "cache"))
    pictures = gallery(cfg, [0, 3], ["dgba_pgd", "single_normal_pgd"], [0, 4], progress=False)
    assert list(pictures) == [0, 3]
    with Image.open(io.BytesIO(pictures[3])) as img:
        # 2 attacks x (image + 3 tasks) = 8 rows; 1 + 2 eps = 3 columns: taller than wide.
        assert img.format == "PNG" and img.height > 2 * img.width
    with pytest.raises(UserError, match="attack 'dgba_pdg' is not a preset"):
        gallery(cfg, [0], ["dgba_pdg"], [0, 4], progress=False)
    with pytest.raises(UserError, match=r"--images \[9\]: give test image indexes from 0 to 5"):
        gallery(cfg, [9], None, [0, 4], progress=False)
