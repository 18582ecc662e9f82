"""One percentile for every figure gated prints (benchmarks, the rehearsal report, the day's report).

`percentile(values, 99)` is the p99: linear interpolation between the two nearest ranks (numpy's
default and `statistics.quantiles(..., method="inclusive")`), so that a p99 means the same thing
in every table. Empty input gives NaN rather than an error: a figure that could not be measured.
"""

from __future__ import annotations

import math


def percentile(values, q: float) -> float:
    """The q-th percentile (q from 0 to 100) of `values`, interpolated linearly; NaN when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not between 0 and 100")
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
