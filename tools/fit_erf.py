"""Fits the rational erf of src/dtype.rs (`erf_f32`): erf(x) ≈ x·P(x²)/Q(x²) on [0, 3.92], with
P of degree 6 and Q of degree 5 (Q(0) = 1), minimizing the relative error by Sanathanan–Koerner
iteration (weighted linear least squares, the weights 1/(erf·Q) of the previous pass). Prints
the f32 coefficients and the worst relative error of the f64 fit and of the f32 evaluation.

    python3 tools/fit_erf.py     # numpy only
"""

import math

import numpy as np

X = np.linspace(1e-6, 3.92, 20000)
REF = np.array([math.erf(x) for x in X])
U = X**2
NP, NQ = 7, 5

q_values = np.ones_like(X)
for _ in range(30):
    design = np.hstack([X[:, None] * U[:, None] ** np.arange(NP), -(REF[:, None] * U[:, None] ** np.arange(1, NQ + 1))])
    w = 1.0 / (REF * q_values)
    coef, *_ = np.linalg.lstsq(design * w[:, None], REF * w, rcond=None)
    p, q = coef[:NP], np.concatenate([[1.0], coef[NP:]])
    q_values = np.polyval(q[::-1], U)
print("f64 fit: worst relative error", np.max(np.abs(X * np.polyval(p[::-1], U) / q_values - REF) / REF))

x32, p32, q32 = X.astype(np.float32), p.astype(np.float32), q.astype(np.float32)
u32 = x32 * x32
num = np.zeros_like(x32)
for c in p32[::-1]:
    num = num * u32 + c
den = np.zeros_like(x32)
for c in q32[::-1]:
    den = den * u32 + c
ref32 = np.array([math.erf(float(x)) for x in x32])
print("f32 evaluation: worst relative error", np.max(np.abs((x32 * num / den).astype(np.float64) - ref32) / ref32))
print("P:", ", ".join(repr(float(c)) for c in p32))
print("Q:", ", ".join(repr(float(c)) for c in q32))
