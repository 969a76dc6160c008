"""The one percentile of the project's reports: the demo, the compose workload and the benchmark."""

import math


def percentile(sorted_values, fraction: float) -> float:
    """Nearest-rank percentile of an ascending list: the smallest value with at least `fraction`
    (0..1) of the values at or below it. NaN for an empty list."""
    if not sorted_values:
        return float("nan")
    # Rounded first so that a product such as 0.07 * 100 = 7.000000000000001 ranks 7, not 8.
    rank = max(1, math.ceil(round(fraction * len(sorted_values), 9)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])
