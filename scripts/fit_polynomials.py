"""Derives the polynomial coefficients of csrc/core/cpu_vector_math.h (float64, NumPy only).

- exp(r) on |r| <= 0.35 (the reduced argument, ln 2 / 2 plus rounding margin):
  1 + r + r^2 (c2 + c3 r + ... + c6 r^4), minimax in relative error.
- log1p(e) = 2 atanh(s) = 2 s (1 + u (q0 + q1 u + q2 u^2 + q3 u^3)), u = s^2, s in [0, 1/3]:
  minimax in relative error over u in [0, 1/9].

Minimax by Lawson's iteratively reweighted least squares on Chebyshev points. Prints the
coefficients rounded to float32 and the largest relative error of the polynomial in exact
arithmetic, next to the Taylor polynomial of the same degree.

    python scripts/fit_polynomials.py
"""
import math

import numpy as np


def minimax(basis, target, weight, iterations=400):
    """Coefficients c minimising max |weight * (basis @ c - target)| (Lawson's algorithm)."""
    a = basis * weight[:, None]
    b = target * weight
    point_weight = np.full(len(b), 1.0 / len(b))
    for _ in range(iterations):
        root = np.sqrt(point_weight)
        coefficients = np.linalg.lstsq(a * root[:, None], b * root, rcond=None)[0]
        error = np.abs(a @ coefficients - b)
        point_weight = point_weight * error
        point_weight /= point_weight.sum()
    return coefficients, float(np.max(np.abs(a @ coefficients - b)))


def chebyshev_points(low, high, count=4000):
    return low + (high - low) * (np.cos(np.linspace(0.0, np.pi, count)) + 1.0) / 2.0


def float32_list(values):
    return ", ".join(f"{np.float32(v):.8g}f" for v in values)


def main():
    r = chebyshev_points(-0.35, 0.35)
    powers = np.stack([r**k for k in range(2, 7)], axis=1)
    remainder = np.exp(r) - 1.0 - r
    coefficients, error = minimax(powers, remainder, 1.0 / np.exp(r))
    taylor = np.array([1.0 / math.factorial(k) for k in range(2, 7)])
    taylor_error = np.max(np.abs(powers @ taylor - remainder) / np.exp(r))
    print(f"exp, degree 6: c2..c6 = {float32_list(coefficients)}")
    print(f"  max relative error {error:.2e} (Taylor of degree 6: {taylor_error:.2e})")

    u = chebyshev_points(1e-12, 1.0 / 9.0)
    s = np.sqrt(u)
    remainder = np.arctanh(s) / s - 1.0  # u (q0 + q1 u + q2 u^2 + q3 u^3)
    powers = np.stack([u ** (k + 1) for k in range(4)], axis=1)
    coefficients, error = minimax(powers, remainder, 1.0 / (1.0 + remainder))
    taylor = np.array([1.0 / (2 * k + 3) for k in range(4)])
    taylor_error = np.max(np.abs(powers @ taylor - remainder) / (1.0 + remainder))
    print(f"log1p via atanh, s to s^9: q0..q3 = {float32_list(coefficients)}")
    print(f"  max relative error {error:.2e} (Taylor to s^9: {taylor_error:.2e})")


if __name__ == "__main__":
    main()
