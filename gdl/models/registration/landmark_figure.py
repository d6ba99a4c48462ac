"""A picture of landmark registration errors: where on the tree the error is, and how it relates to
the motion.

Two projections of the target tree (grey), front (x, z) and side (y, z), with each landmark drawn at
its target position and coloured by its error after the last step; then the error after each step
against the distance the landmark moved between the two clouds (its error before registration), with
the line error = motion (no better than no registration) and the 10 mm line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_landmark_errors(tree, target_landmarks, errors_mm: dict, path, unit_mm: float = 1.0, title: str = "",
                         max_points: int = 20000) -> Path:
    """Write the PNG ``path``. ``tree`` (N, 3) and ``target_landmarks`` (L, 3) in cloud units,
    ``errors_mm``: ordered {stage: (L,) errors in mm}, its first stage the errors before registration
    (the distance moved); ``unit_mm`` mm per cloud unit, for the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(errors_mm)
    if len(stages) < 2:
        raise ValueError(f"errors_mm needs the errors before registration and after at least one step, got {stages}")
    errors = {stage: np.asarray(values, dtype=np.float64) for stage, values in errors_mm.items()}
    tree, landmarks = np.asarray(tree) * unit_mm, np.asarray(target_landmarks) * unit_mm
    if len(tree) > max_points:
        tree = tree[np.random.default_rng(0).choice(len(tree), max_points, replace=False)]
    moved, last = errors[stages[0]], errors[stages[-1]]
    top = float(max(moved.max(), last.max()))

    figure, axes = plt.subplots(1, 3, figsize=(17, 6), gridspec_kw={"width_ratios": [1, 1, 1.15]}, layout="constrained")
    order = np.argsort(last)  # the largest errors drawn last, on top
    for ax, (i, j, name) in zip(axes[:2], ((0, 2, "front (x, z)"), (1, 2, "side (y, z)"))):
        ax.scatter(tree[:, i], tree[:, j], s=0.2, c="0.75", rasterized=True)
        dots = ax.scatter(landmarks[order, i], landmarks[order, j], c=last[order], s=22, cmap="plasma", vmin=0, vmax=top,
                          edgecolors="black", linewidths=0.3)
        ax.set_title(f"{name}: error after {stages[-1]}")
        ax.set_xlabel("xyz"[i] + " (mm)")
        ax.set_ylabel("xyz"[j] + " (mm)")
        ax.set_aspect("equal")
    figure.colorbar(dots, ax=axes[:2].tolist(), shrink=0.8, label="landmark error (mm)")

    ax = axes[2]
    ax.plot([0, top], [0, top], color="0.5", linestyle="--", linewidth=1, label="error = motion")
    ax.axhline(10.0, color="tab:red", linestyle=":", linewidth=1, label="10 mm")
    for stage, marker in zip(stages[1:], "os^vD"):
        values = errors[stage]
        ax.scatter(moved, values, s=14, marker=marker, alpha=0.7,
                   label=f"after {stage}: mean {values.mean():.1f}, median {np.median(values):.1f} mm")
    ax.set_xlabel(f"distance moved (error {stages[0]}, mm): mean {moved.mean():.1f}")
    ax.set_ylabel("landmark error (mm)")
    ax.set_title("error against motion")
    ax.legend(loc="upper left", fontsize=8)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
