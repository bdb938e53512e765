"""Fits the rational approximations of src/dtype.rs: f(x) ≈ x·P(x²)/Q(x²) on [0, top] for an
odd function f, Q(0) = 1, minimizing the relative error by Sanathanan–Koerner iteration
(weighted linear least squares, the weights 1/(f·Q) of the previous pass). Prints the f32
coefficients and the worst relative error of the f64 fit and of the f32 evaluation (clamped at
1, as the Rust code clamps).

    python3 tools/fit_rational.py erf    # erf_f32: P degree 6, Q degree 5 on [0, 3.92]
    python3 tools/fit_rational.py tanh   # tanh_f32: P degree 6, Q degree 6 on [0, 9]

numpy only. Past `top` both functions round to ±1 in f32.
"""

import math
import sys

import numpy as np

# function, top of the range, coefficients of P, coefficients of Q after the leading 1, sample
# points, iterations
FITS = {"erf": (math.erf, 3.92, 7, 5, 20000, 30), "tanh": (math.tanh, 9.0, 7, 6, 40000, 40)}


def horner(coefficients, u):
    out = np.zeros_like(u)
    for c in coefficients[::-1]:
        out = out * u + c
    return out


def main(name):
    f, top, n_p, n_q, points, iterations = FITS[name]
    x = np.linspace(1e-6, top, points)
    ref = np.array([f(v) for v in x])
    u = x**2
    q_values = np.ones_like(x)
    for _ in range(iterations):
        design = np.hstack([x[:, None] * u[:, None] ** np.arange(n_p), -(ref[:, None] * u[:, None] ** np.arange(1, n_q + 1))])
        w = 1.0 / (ref * q_values)
        coef, *_ = np.linalg.lstsq(design * w[:, None], ref * w, rcond=None)
        p, q = coef[:n_p], np.concatenate([[1.0], coef[n_p:]])
        q_values = horner(q, u)
    print("f64 fit: worst relative error", np.max(np.abs(x * horner(p, u) / q_values - ref) / ref))

    x32, p32, q32 = x.astype(np.float32), p.astype(np.float32), q.astype(np.float32)
    u32 = x32 * x32
    y32 = np.minimum(x32 * horner(p32, u32) / horner(q32, u32), np.float32(1.0))
    ref32 = np.array([f(float(v)) for v in x32])
    print("f32 evaluation: worst relative error", np.max(np.abs(y32.astype(np.float64) - ref32) / ref32))
    print("P:", ", ".join(repr(float(c)) for c in p32))
    print("Q:", ", ".join(repr(float(c)) for c in q32))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "erf")
