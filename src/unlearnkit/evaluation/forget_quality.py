"""TOFU forget quality: KS two-sample test p-value between truth-ratio distributions (docs/metrics.md).

``scipy.stats.ks_2samp`` two-sided with its default method ("auto": exact for small
samples, asymptotic otherwise), as OpenUnlearning does. KS only sees ranks, so passing R
or OpenUnlearning's 1/R gives the same p-value. The samples may differ in size.
1.0 = indistinguishable from the retain model; published values go down to ~1e-239.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import ks_2samp


def _sample(values: Sequence[float], name: str) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"forget_quality: {name} must be a non-empty list of truth ratios")
    if np.isnan(a).any():
        raise ValueError(f"forget_quality: {name} contains NaN")
    return a


def forget_quality(unlearned_ratios: Sequence[float], retain_ratios: Sequence[float]) -> float:
    """KS p-value between the unlearned model's and the retain model's per-example forget-set R."""
    a = _sample(unlearned_ratios, "unlearned_ratios")
    b = _sample(retain_ratios, "retain_ratios")
    return float(ks_2samp(a, b).pvalue)
