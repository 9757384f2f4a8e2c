"""Independent two-sided p-values of the paired sign-flip (randomisation) test, with scipy.

Reads JSON from stdin: a list of difference lists. For each, compares "A" = the differences
against "B" = zeros with scipy.stats.permutation_test over every pairing swap
(permutation_type="samples", n_resamples=inf: exact), the statistic being the mean of A - B.
Prints one p-value per line.
"""
import json
import sys

import numpy as np
from scipy import stats


def statistic(a, b, axis):
    return np.mean(a - b, axis=axis)


for differences in json.load(sys.stdin):
    a = np.asarray(differences, dtype=float)
    b = np.zeros_like(a)
    result = stats.permutation_test(
        (a, b), statistic, permutation_type="samples", n_resamples=np.inf, alternative="two-sided", vectorized=True
    )
    print(repr(float(result.pvalue)))
