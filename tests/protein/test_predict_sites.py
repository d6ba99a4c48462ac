"""The predict_sites command: a PLY with a score per surface point and a PNG, trained or not."""

import numpy as np
import pytest
import torch
from plyfile import PlyData

import gdl.ops
from gdl.cli.predict_sites import main
from gdl.data.proteins import SAMPLE_DIR
from gdl.models.dmasif import DMaSIF

NEEDED = ("grid_subsample", "curvatures", "tangent_frames", "quasi_geodesic_conv")
pytestmark = pytest.mark.skipif(
    any(op not in gdl.ops.available() for op in NEEDED), reason=f"needs the operators {NEEDED}"
)


@pytest.mark.slow
def test_predict_sites_writes_scored_surface(tmp_path, capsys):
    pdb = SAMPLE_DIR / "3E2U_E.pdb.gz"
    # A checkpoint in Lightning's layout whose site head always answers 0.73.
    model = DMaSIF(head="site")
    last = model.head.mlp[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, float(np.log(0.73 / 0.27)))
    ckpt = tmp_path / "site.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    assert main([str(pdb), "--ckpt", str(ckpt), "--out", str(tmp_path / "out")]) == 0
    vertex = PlyData.read(str(tmp_path / "out" / "3E2U_E_sites.ply"))["vertex"]
    assert len(vertex) > 100
    assert np.allclose(vertex["score"], 0.73, atol=1e-4)
    normals = np.stack([vertex["nx"], vertex["ny"], vertex["nz"]], 1)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-4)
    assert (tmp_path / "out" / "3E2U_E_sites.png").stat().st_size > 1000

    assert main([str(pdb), "--out", str(tmp_path / "untrained")]) == 0
    assert "untrained" in capsys.readouterr().err
    scores = PlyData.read(str(tmp_path / "untrained" / "3E2U_E_sites.ply"))["vertex"]["score"]
    assert ((scores > 0) & (scores < 1)).all()
