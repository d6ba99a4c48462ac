"""Scene-flow metrics of the KITTI protocol, per point cloud, with e = |flow_pred - flow_gt|:

    EPE3D     mean(e)                                   (metres)
    Acc3DS    fraction with e < 0.05 or e / |flow_gt| < 0.05
    Acc3DR    fraction with e < 0.1  or e / |flow_gt| < 0.1
    Outliers  fraction with e > 0.3  or e / |flow_gt| > 0.1
"""

from __future__ import annotations

import torch

from gdl.ops.core.checks import check_points, check_values


def scene_flow_metrics(flow_pred: torch.Tensor, flow_gt: torch.Tensor) -> dict[str, float]:
    """EPE3D, Acc3DS, Acc3DR and Outliers of one cloud's predicted flow, as Python floats."""
    check_points("flow_gt", flow_gt)
    check_values("flow_pred", flow_pred, flow_gt.shape[0], flow_gt)
    if flow_pred.shape != flow_gt.shape:
        raise ValueError(f"flow_pred must have shape {tuple(flow_gt.shape)}, got {tuple(flow_pred.shape)}")
    error = (flow_pred - flow_gt).norm(dim=1)
    relative = error / flow_gt.norm(dim=1).clamp_min(torch.finfo(flow_gt.dtype).tiny)
    return {
        "EPE3D": float(error.mean()),
        "Acc3DS": float(((error < 0.05) | (relative < 0.05)).float().mean()),
        "Acc3DR": float(((error < 0.1) | (relative < 0.1)).float().mean()),
        "Outliers": float(((error > 0.3) | (relative > 0.1)).float().mean()),
    }
