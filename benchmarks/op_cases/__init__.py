"""Benchmark cases of the operators, one module per family; ``benchmarks/ops.py`` runs them all.

Each module defines ``cases(device: torch.device, sizes: list[int]) -> list[Case]``.
"""
