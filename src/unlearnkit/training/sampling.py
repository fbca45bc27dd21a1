"""Deterministic batch order: the indices of any step follow from (seed, step) alone,
so a resumed run sees exactly the batches an uninterrupted one would."""

from __future__ import annotations

import numpy as np


def step_indices(n: int, step: int, size: int, seed: int) -> list[int]:
    """Indices of examples for ``step``: consecutive slices of per-epoch permutations."""
    if n <= 0:
        raise ValueError("cannot sample from an empty set")
    start = step * size
    out: list[int] = []
    perms: dict[int, np.ndarray] = {}
    for pos in range(start, start + size):
        epoch, offset = divmod(pos, n)
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(perms[epoch][offset]))
    return out
