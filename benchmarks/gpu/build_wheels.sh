#!/usr/bin/env bash
# Build (here, with network) the wheels that the GPU machine lacks, into benchmarks/gpu/wheels.
# Pure-Python packages are built with `pip wheel --no-deps`; compiled ones are downloaded for the
# GPU machine's interpreter (CPython 3.12, manylinux x86_64). Versions follow this environment.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p wheels
version() { python -c "import importlib.metadata as m; print(m.version('$1'))"; }
pure=(pykeops keopscore geomloss hydra-core omegaconf antlr4-python3-runtime pybind11 wandb plyfile
      pytest pluggy iniconfig)
specs=()
for package in "${pure[@]}"; do specs+=("$package==$(version "$package")"); done
pip wheel --no-deps -w wheels "${specs[@]}"
# wandb ships a platform-specific wheel (py3-none-manylinux); pot, pykdtree and fpsample are CPython
# extensions (scipy, for cKDTree, is usually there already with torch-geometric).
binary=("wandb==$(version wandb)" "pot==$(version pot)" "pykdtree==$(version pykdtree)" "fpsample==$(version fpsample)")
pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d wheels "${binary[@]}"
rm -f wheels/wandb-*-py3-none-any.whl wheels/wandb-*.tar.gz
du -sh wheels
