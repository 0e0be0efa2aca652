"""The calibrated estimator for models without a public tokenizer (pure; no I/O).

tokens ~= w . x, where x is the prompt's script features (characters per class, message
and image counts) and w is learned per model from provider-reported prompt sizes by
weighted least squares on relative error, pulled towards a per-family prior (ridge) so a
few samples cannot produce wild weights. The error bound is the 95th percentile of
|estimate - reported| / reported on held-out samples (every 5th sample is held out of the
fit that measures it; the served weights are then fitted on all samples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tokenrt_counter.features import NAMES, Features

# Samples a model needs before its own fit replaces the prior.
MIN_SAMPLES = 20
# Held-out samples needed to state a measured bound.
MIN_HELD_OUT = 5
# Relative error bound stated for the uncalibrated prior, in basis points. A deliberately
# wide guess: the prior weights are rules of thumb, not measurements.
PRIOR_BOUND_BP = 3000
# A sample whose reported size is this far (ratio) from the current estimate is an outlier.
OUTLIER_RATIO = 4.0
RIDGE = 0.05

# Tokens per character of each class, per message and per image, by tokenizer family.
# Order: latin, cjk, code, digit, whitespace, other, messages, images.
_PRIORS: dict[str, tuple[float, ...]] = {
    "claude": (0.27, 1.05, 0.33, 0.55, 0.10, 0.75, 6.0, 1200.0),
    "gemini": (0.25, 0.80, 0.30, 0.50, 0.08, 0.60, 4.0, 258.0),
    "llama": (0.25, 0.90, 0.30, 0.35, 0.08, 0.65, 5.0, 1000.0),
    "mistral": (0.26, 0.95, 0.31, 0.50, 0.08, 0.70, 4.0, 1000.0),
    "deepseek": (0.25, 0.70, 0.30, 0.45, 0.08, 0.60, 5.0, 1000.0),
    "qwen": (0.25, 0.70, 0.30, 0.45, 0.08, 0.60, 5.0, 1000.0),
    "generic": (0.27, 1.00, 0.33, 0.50, 0.10, 0.75, 5.0, 1000.0),
}


def prior(tokenizer_id: str) -> tuple[float, ...]:
    family = tokenizer_id.removeprefix("estimate:")
    return _PRIORS.get(family, _PRIORS["generic"])


@dataclass(frozen=True)
class Fit:
    weights: tuple[float, ...]
    samples: int
    error_bound_bp: int
    calibrated: bool

    def estimate(self, f: Features) -> int:
        return max(0, math.ceil(sum(w * x for w, x in zip(self.weights, f.vector(),
                                                          strict=True)) - 1e-9))

    def to_json(self) -> dict[str, object]:
        return {"w": list(self.weights), "n": self.samples, "bp": self.error_bound_bp,
                "cal": self.calibrated}

    @staticmethod
    def from_json(data: dict[str, object]) -> Fit:
        weights = tuple(float(w) for w in data["w"])  # type: ignore[attr-defined]
        if len(weights) != len(NAMES):
            raise ValueError("weights do not match the feature set")
        return Fit(weights, int(data["n"]), int(data["bp"]),  # type: ignore[call-overload]
                   bool(data["cal"]))


def uncalibrated(tokenizer_id: str) -> Fit:
    return Fit(prior(tokenizer_id), 0, PRIOR_BOUND_BP, False)


Sample = tuple[Features, int]


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the systems here are 8 x 8)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-12:
            continue
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[r][col] != 0.0:
                k = m[r][col] / m[col][col]
                m[r] = [x - k * y for x, y in zip(m[r], m[col], strict=True)]
    return [m[i][n] / m[i][i] if abs(m[i][i]) > 1e-12 else 0.0 for i in range(n)]


def fit_weights(samples: Sequence[Sample], base: Sequence[float]) -> tuple[float, ...]:
    """Ridge-regularised least squares on relative error, weights kept >= 0."""
    n = len(base)
    a = [[0.0] * n for _ in range(n)]
    b = [0.0] * n
    scale = [0.0] * n
    for features, reported in samples:
        x = features.vector()
        inv = 1.0 / max(reported, 1)
        for i in range(n):
            xi = x[i] * inv
            if xi == 0.0:
                continue
            b[i] += xi
            scale[i] += xi * xi
            row = a[i]
            for j in range(n):
                row[j] += xi * x[j] * inv
    count = max(len(samples), 1)
    for i in range(n):
        d = RIDGE * (scale[i] / count + 1e-6)
        a[i][i] += d
        b[i] += d * base[i]
    return tuple(max(0.0, w) for w in _solve(a, b))


def relative_errors(weights: Sequence[float], samples: Sequence[Sample]) -> list[float]:
    fit = Fit(tuple(weights), 0, 0, True)
    return [abs(fit.estimate(f) - r) / max(r, 1) for f, r in samples]


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def fit(samples: Sequence[Sample], tokenizer_id: str) -> Fit:
    """The served fit for a model from its calibration window (oldest first)."""
    base = prior(tokenizer_id)
    if len(samples) < MIN_SAMPLES:
        return Fit(base, len(samples), PRIOR_BOUND_BP, False)
    held = [s for i, s in enumerate(samples) if i % 5 == 4]
    train = [s for i, s in enumerate(samples) if i % 5 != 4]
    if len(held) >= MIN_HELD_OUT:
        bound = p95(relative_errors(fit_weights(train, base), held))
        bound_bp = max(1, math.ceil(bound * 10000))
    else:
        bound_bp = PRIOR_BOUND_BP
    return Fit(fit_weights(samples, base), len(samples), min(bound_bp, 10000), True)


def is_outlier(current: Fit, features: Features, reported: int) -> bool:
    estimate = current.estimate(features)
    if estimate <= 0 or reported <= 0:
        return reported <= 0
    ratio = reported / estimate
    return ratio > OUTLIER_RATIO or ratio < 1 / OUTLIER_RATIO
