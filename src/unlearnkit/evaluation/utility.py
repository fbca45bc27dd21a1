"""TOFU model utility: harmonic mean of {Prob, ROUGE, Truth ratio} × {retain, real_authors, world_facts}.

Any non-empty mapping is accepted (e.g. without ROUGE when generation was skipped); the
published number uses exactly the nine ``UTILITY_KEYS``. As for ``scipy.stats.hmean``,
a single 0 makes the harmonic mean 0 (a model that fails one component has no utility).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from scipy.stats import hmean

UTILITY_KEYS = tuple(f"{split}_{metric}" for split in ("retain", "real_authors", "world_facts")
                     for metric in ("prob", "rouge", "truth_ratio"))


def model_utility(values: Mapping[str, float]) -> float:
    """Harmonic mean of the values; ValueError naming the key of any missing, NaN or negative value."""
    if not values:
        raise ValueError("model_utility needs at least one value")
    nums = []
    for key, value in values.items():
        if value is None:
            raise ValueError(f"model_utility: value for {key!r} is missing (None)")
        v = float(value)
        if math.isnan(v):
            raise ValueError(f"model_utility: value for {key!r} is NaN")
        if v < 0:
            raise ValueError(f"model_utility: value for {key!r} is negative ({v})")
        nums.append(v)
    if any(v == 0 for v in nums):
        return 0.0
    return float(hmean(nums))
