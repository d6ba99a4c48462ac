"""Every registered operator on CUDA (KeOps backend) against the torch backend on CPU in float64.

Each operator has at least one case in ``CASES``: parameters, a builder of small random inputs with
ragged batches, and the inputs to differentiate. Outputs and gradients of a random linear functional
of the outputs are compared. A CPU test makes sure that no registered operator lacks a case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch

import gdl.ops

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (these tests run on the GPU machine)")


@dataclass
class Case:
    """Operator parameters, a builder ``inputs(generator) -> dict`` of float64 CPU keyword inputs,
    the names of the inputs to differentiate, and relative tolerances in float32 and float64
    (iterative solvers that differ between backends, e.g. GeomLoss' online and tensorized Sinkhorn,
    agree to about 1e-6 rather than to rounding)."""

    params: dict
    inputs: Callable[[torch.Generator], dict]
    differentiable: tuple[str, ...] = ()
    float32_tolerance: float = 1e-3
    float64_tolerance: float = 1e-6
    label: str = ""


def cloud(generator, n, d=3):
    return torch.rand(n, d, generator=generator, dtype=torch.float64)


def sphere(generator, n):
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=torch.float64), dim=1)


def items(*sizes):
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


SIZES_X, SIZES_Y = (150, 90, 60), (120, 130, 50)


def pair_inputs(generator, d=3):
    return {
        "x": cloud(generator, sum(SIZES_X), d),
        "y": cloud(generator, sum(SIZES_Y), d),
        "batch_x": items(*SIZES_X),
        "batch_y": items(*SIZES_Y),
    }


def surface_inputs(generator, features=0):
    """Two spheres (radius 1 and 2) with outward normals and tangent frames."""
    n = sphere(generator, 300)
    x = torch.cat([n[:180], 2 * n[180:]])
    u = torch.nn.functional.normalize(torch.linalg.cross(n, torch.tensor([[0.3, 0.5, 0.8]]).double().expand_as(n)), dim=1)
    frames = torch.stack([u, torch.linalg.cross(n, u)], dim=1)
    inputs = {"x": x, "normals": n, "frames": frames, "batch": items(180, 120)}
    if features:
        inputs["features"] = torch.randn(300, features, generator=generator, dtype=torch.float64)
    return inputs


def with_values(inputs, generator, name, rows, e=2):
    inputs[name] = torch.randn(rows, e, generator=generator, dtype=torch.float64)
    return inputs


def masses(generator, sizes):
    a = torch.rand(sum(sizes), generator=generator, dtype=torch.float64) + 0.5
    batch = items(*sizes)
    return a / torch.zeros(len(sizes), dtype=torch.float64).index_add_(0, batch, a)[batch]


def ot_inputs(generator):
    inputs = pair_inputs(generator)
    inputs["a"], inputs["b"] = masses(generator, SIZES_X), masses(generator, SIZES_Y)
    return inputs


CASES: dict[str, list[Case]] = {
    "knn": [
        Case({"k": 8, "method": "brute"}, pair_inputs, ("x", "y"), label="brute"),
        Case({"k": 8, "method": "grid"}, pair_inputs, ("x", "y"), label="grid"),
        Case({"k": 6, "metric": "cosine", "exclude_self": True},
             lambda g: {"x": cloud(g, 400) - 0.5, "batch_x": items(250, 150)}, ("x",), label="cosine"),
    ],
    "radius": [Case({"r": 0.3, "max_neighbors": 16}, pair_inputs, ("x", "y"))],
    "kernel_conv": [
        Case({"kernel": "gaussian", "sigma": 0.3}, lambda g: with_values(pair_inputs(g), g, "b", sum(SIZES_Y)),
             ("x", "y", "b")),
        Case({"kernel": "laplacian", "sigma": [0.1, 0.5]},
             lambda g: with_values(pair_inputs(g), g, "b", sum(SIZES_Y)), ("x", "y", "b"), label="multiscale"),
    ],
    "kernel_solve": [
        Case({"kernel": "gaussian", "sigma": 0.2, "alpha": 0.1, "tol": 1e-10},
             lambda g: {"x": cloud(g, 300), "b": torch.randn(300, 2, generator=g, dtype=torch.float64),
                        "batch": items(200, 100)}, ("x", "b"), float32_tolerance=1e-2),
    ],
    "fps": [Case({"ratio": 0.25}, lambda g: {"x": cloud(g, 300), "batch": items(100, 150, 50)})],
    "grid_subsample": [
        Case({"voxel_size": 0.3}, lambda g: {"x": cloud(g, 300), "batch": items(100, 200),
                                              "features": torch.randn(300, 4, generator=g, dtype=torch.float64)},
             ("x", "features")),
    ],
    "nadaraya_watson": [
        Case({"kernel": "gaussian", "sigma": 0.2},
             lambda g: {"x_query": cloud(g, 300), "x_src": cloud(g, 300),
                        "values": torch.randn(300, 3, generator=g, dtype=torch.float64),
                        "weights": torch.rand(300, generator=g, dtype=torch.float64) + 0.1,
                        "batch_query": items(200, 100), "batch_src": items(120, 180)},
             ("x_query", "x_src", "values", "weights")),
    ],
    "local_linear": [
        Case({"kernel": "gaussian", "sigma": 0.2, "ridge": 0.1},
             lambda g: {"x_query": cloud(g, 300), "x_src": cloud(g, 300),
                        "values": torch.randn(300, 3, generator=g, dtype=torch.float64),
                        "weights": torch.rand(300, generator=g, dtype=torch.float64) + 0.1,
                        "batch_query": items(200, 100), "batch_src": items(120, 180)},
             ("x_query", "x_src", "values", "weights"), float32_tolerance=1e-2),
    ],
    "normals": [
        Case({"scale": 0.3}, lambda g: {"x": surface_inputs(g)["x"], "batch": items(180, 120)}, ("x",),
             float32_tolerance=1e-2),
    ],
    "tangent_frames": [Case({}, lambda g: {"normals": sphere(g, 300)}, ("normals",))],
    "curvatures": [
        Case({"scales": [0.3, 0.6], "reg": 0.01},
             lambda g: {k: v for k, v in surface_inputs(g).items() if k in ("x", "normals", "batch")},
             ("x", "normals"), float32_tolerance=1e-2),
    ],
    "orientation_field": [
        Case({"in_channels": 4, "radius": 0.5}, lambda g: surface_inputs(g, features=4),
             ("x", "normals", "features"), float32_tolerance=1e-2),
    ],
    "quasi_geodesic_conv": [
        Case({"in_channels": 4, "out_channels": 5, "radius": 0.5, "hidden_units": 8},
             lambda g: surface_inputs(g, features=4), ("x", "normals", "features"), float32_tolerance=1e-2),
    ],
    "point_conv": [
        Case({"in_channels": 4, "out_channels": 5, "k": 8, "hidden_units": 8},
             lambda g: {"x_query": cloud(g, 300), "x_src": cloud(g, 280),
                        "features_src": torch.randn(280, 4, generator=g, dtype=torch.float64),
                        "batch_query": items(200, 100), "batch_src": items(150, 130)},
             ("x_query", "x_src", "features_src")),
    ],
    "sinkhorn": [
        Case({"blur": 0.1, "scaling": 0.7}, ot_inputs, ("x", "y", "a", "b"), float32_tolerance=1e-2, float64_tolerance=1e-5),
        Case({"blur": 0.1, "reach": 0.5, "scaling": 0.9}, ot_inputs, ("x", "y"), float32_tolerance=1e-2, float64_tolerance=1e-5,
             label="unbalanced"),
    ],
    "sinkhorn_potentials": [
        Case({"blur": 0.1, "scaling": 0.7}, ot_inputs, ("x", "y"), float32_tolerance=1e-2, float64_tolerance=1e-5),
    ],
    "robot_map": [
        Case({"blur": 0.1, "scaling": 0.7}, ot_inputs, ("x", "y"), float32_tolerance=1e-2, float64_tolerance=1e-5),
    ],
    "weighted_procrustes": [
        Case({"mode": "rigid"},
             lambda g: {"x": cloud(g, 200), "y": cloud(g, 200),
                        "w": torch.rand(200, generator=g, dtype=torch.float64) + 0.1, "batch": items(120, 80)},
             ("x", "y", "w")),
    ],
}

CASE_IDS = [(name, case) for name, cases in CASES.items() for case in cases]


def case_id(entry):
    name, case = entry
    return f"{name}-{case.label}" if case.label else name


def tensors_of(output):
    """The tensors of an output (a tensor, or nested tuples/lists of them and None), in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in tensors_of(item)]
    if output is None:
        return []
    raise TypeError(f"unexpected output type {type(output).__name__}")


def run(name, case, inputs, device, dtype, backend, weights_seed):
    """Outputs and gradients (w.r.t. ``case.differentiable``) of ``sum_t <w_t, out_t>`` on a device."""
    torch.manual_seed(0)  # identical weights for operators that have parameters
    op = gdl.ops.get(name, backend=backend, **case.params).to(device=device, dtype=dtype)
    moved = {}
    for key, value in inputs.items():
        value = value.to(device)
        if value.is_floating_point():
            value = value.to(dtype).requires_grad_(key in case.differentiable)
        moved[key] = value
    outputs = tensors_of(op(**moved))
    generator = torch.Generator().manual_seed(weights_seed)
    loss = 0
    for out in outputs:
        if out.is_floating_point() and out.requires_grad:
            w = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
            loss = loss + (w * torch.where(torch.isfinite(out), out, torch.zeros_like(out))).sum()
    wrt = [moved[key] for key in case.differentiable]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True) if wrt and torch.is_tensor(loss) else []
    return [t.detach().cpu() for t in outputs], [None if g is None else g.cpu() for g in grads]


def compare_backends(name, case, device, dtype, generator):
    """Operator ``name`` with the KeOps backend on ``device`` in ``dtype`` vs torch on CPU in float64."""
    inputs = case.inputs(generator)
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    outputs, grads = run(name, case, inputs, device, dtype, "keops", seed)
    ref_outputs, ref_grads = run(name, case, inputs, "cpu", torch.float64, "torch", seed)
    tol = {"rtol": case.float64_tolerance, "atol": case.float64_tolerance / 100} if dtype == torch.float64 else {
        "rtol": case.float32_tolerance, "atol": case.float32_tolerance}
    assert len(outputs) == len(ref_outputs)
    for out, ref in zip(outputs, ref_outputs):
        assert out.shape == ref.shape
        if ref.is_floating_point():
            torch.testing.assert_close(out.double(), ref, **tol)
        elif dtype == torch.float64:  # float32 rounding may reorder near-ties of indices
            assert torch.equal(out, ref)
    for grad, ref in zip(grads, ref_grads):
        assert (grad is None) == (ref is None)
        if ref is not None:
            torch.testing.assert_close(grad.double(), ref, **tol)


def test_every_registered_operator_has_a_gpu_case():
    missing = sorted(set(gdl.ops.available()) - set(CASES))
    assert not missing, f"add GPU test cases for {missing} to tests/gpu/test_gpu_ops.py"


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("entry", CASE_IDS, ids=case_id)
def test_keops_on_cuda_matches_torch_on_cpu(entry, dtype, generator):
    name, case = entry
    compare_backends(name, case, torch.device("cuda"), dtype, generator)


@requires_cuda
def test_keops_works_on_cuda():
    works, reason = gdl.ops.keops_status("cuda")
    assert works, reason
