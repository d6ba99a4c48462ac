"""dMaSIF per-protein cost on the CPU, exact and with truncated windows, and what truncation moves.

One protein chain (``--pdb``; default the shipped sample 3E2U_E), resolution 1 A, the default site model
(curvatures at 1..10 A, 3 quasi-geodesic layers of radius 9 A). Stages timed (seconds, one call
each, interleaved exact / truncated): surface (atoms_to_surface), fixed features (curvatures and
descriptors), forward and backward of the network on that surface. Deviations at the chosen
truncate values:

- surface: max |SDF(x) - SDF_truncated(x)| over the truncated surface points (how far the
  truncated level set lies from the exact one along the normal, |grad SDF| being about 1);
- site logits: the exact model and the truncated one on the same exact surface, max |difference|.

    python benchmarks/dmasif_truncation.py [--pdb chain.pdb.gz] [--surface 8] [--curvatures 5] [--conv 3] [--rounds 2]

writes benchmarks/results/dmasif_truncation_cpu.json; the recorded file is of the MaSIF-search chain
1XPJ_A (2027 atoms): ``--pdb <masif_search_pairs>/1XPJ_A.pdb.gz``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from gdl.data.pdb import read_pdb
from gdl.data.proteins import SAMPLE_DIR
from gdl.models.dmasif import DMaSIF
from gdl.models.dmasif.model import Surface
from gdl.models.dmasif.surface import ATOM_RADII, atom_radii, atoms_to_surface, smooth_distance

HERE = Path(__file__).resolve().parent
CHAIN = SAMPLE_DIR / "3E2U_E.pdb.gz"


def set_truncation(model: DMaSIF, curvatures: float | None, conv: float | None) -> None:
    model.curvatures.curvatures.truncate = curvatures
    for layer in model.network.convs:
        layer.truncate = conv
        layer.orientation.truncate = conv


def timed(function):
    start = time.perf_counter()
    out = function()
    return out, time.perf_counter() - start


def one_protein(model, atoms, types, properties, truncate_surface, seed):
    """Seconds per stage, and the surface and logits."""
    batch = torch.zeros(atoms.shape[0], dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    (points, normals, point_batch), surface_s = timed(
        lambda: atoms_to_surface(atoms, types, batch, resolution=1.0, generator=generator, truncate=truncate_surface)
    )
    surface = Surface(points, normals, point_batch)
    features, features_s = timed(lambda: model.fixed_features(surface, atoms, types, batch, properties))
    surface = Surface(points, normals, point_batch, features)
    logits, forward_s = timed(lambda: model(surface, atoms, types, batch))
    _, backward_s = timed(lambda: logits.sum().backward())
    model.zero_grad()
    stages = dict(surface=surface_s, features=features_s, forward=forward_s, backward=backward_s)
    stages["total"] = sum(stages.values())
    return stages, surface, logits.detach()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--surface", type=float, default=8.0, help="truncate of atoms_to_surface (angstroms)")
    parser.add_argument("--curvatures", type=float, default=5.0, help="truncate of the curvatures (x scale)")
    parser.add_argument("--conv", type=float, default=3.0, help="truncate of the convolutions (x radius)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pdb", type=Path, default=CHAIN, help="protein chain (default: a shipped sample chain)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dmasif_truncation_cpu.json")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    chain = read_pdb(args.pdb)
    atoms, types, properties = chain.coords, chain.types, chain.residue_properties()
    model = DMaSIF(head="site", resolution=1.0)
    settings = {"exact": (None, None, None), "truncated": (args.surface, args.curvatures, args.conv)}
    runs = {name: [] for name in settings}
    surfaces, logits = {}, {}
    for round_ in range(args.rounds):
        for name, (t_surface, t_curvatures, t_conv) in settings.items():
            set_truncation(model, t_curvatures, t_conv)
            stages, surfaces[name], logits[name] = one_protein(model, atoms, types, properties, t_surface, seed=0)
            runs[name].append(stages)
            print(f"round {round_} {name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()), flush=True)

    # Deviations: the truncated level set against the exact smooth distance, and the truncated
    # model against the exact one on the same (exact) surface.
    sigma = 0.5 * atom_radii(types.double()) / min(ATOM_RADII)
    points = surfaces["truncated"].points.double()
    level_shift = smooth_distance(points, atoms.double(), sigma, backend="torch") - smooth_distance(
        points, atoms.double(), sigma, backend="torch", truncate=args.surface
    )
    exact_surface = surfaces["exact"]
    set_truncation(model, args.curvatures, args.conv)
    with torch.no_grad():
        features = model.fixed_features(exact_surface, atoms, types, None, properties)
        truncated_logits = model(Surface(exact_surface.points, exact_surface.normals, exact_surface.batch, features), atoms, types)
    medians = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in runs.items()}
    result = {
        "chain": args.pdb.name,
        "atoms": int(atoms.shape[0]),
        "surface_points": {name: int(s.points.shape[0]) for name, s in surfaces.items()},
        "truncate": {"surface": args.surface, "curvatures": args.curvatures, "conv": args.conv},
        "seconds_median": medians,
        "speedup": {k: medians["exact"][k] / medians["truncated"][k] for k in medians["exact"]},
        "max_level_set_shift_angstrom": float(level_shift.abs().max()),
        "max_site_logit_difference": float((truncated_logits - logits["exact"]).abs().max()),
        "site_logit_scale": float(logits["exact"].abs().max()),
        "rounds": runs,
        "threads": torch.get_num_threads(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in result if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
