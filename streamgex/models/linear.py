"""Linear regression, the LINCS inference method and D-GEX's baseline.

Multi-task least squares ``Y ~ X W + b`` solved exactly from the normal
equations, accumulated in float64 over streamed batches: ``X'X`` and ``X'Y``
are ``(n_in + 1)^2`` and ``(n_in + 1) x n_out`` whatever the profile count.
``ridge`` adds ``lambda * I`` to ``X'X`` (not on the intercept).
"""

import numpy as np


class NormalEquations:
    """Running ``X'X`` and ``X'Y`` (with an intercept column)."""

    def __init__(self, inputs, outputs):
        self.xtx = np.zeros((inputs + 1, inputs + 1))
        self.xty = np.zeros((inputs + 1, outputs))
        self.count = 0

    def add(self, x, y):
        x = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
        self.xtx += x.T @ x
        self.xty += x.T @ np.asarray(y, np.float64)
        self.count += len(x)

    def solve(self, ridge=0.0):
        """``(n_in + 1, n_out)`` coefficients, the last row the intercept."""
        penalty = np.eye(len(self.xtx)) * ridge
        penalty[-1, -1] = 0.0
        return np.linalg.solve(self.xtx + penalty, self.xty)


def predict(coefficients, x):
    """``x @ W + b`` as float32."""
    return (np.asarray(x, np.float64) @ coefficients[:-1] + coefficients[-1]).astype(np.float32)
