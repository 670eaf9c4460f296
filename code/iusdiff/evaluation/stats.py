"""Statistical tests of paper §3.5 and Figs. 6, 8 and 9, with the authors' conventions.

* Real vs generated size/ESD: Wilcoxon rank-sum (``scipy.stats.ranksums``: normal
  approximation, no tie correction, unlike ``mannwhitneyu``).
* Size–shape: least squares of log(ESD) on log(size) per set and a two-sample t-test of the slopes
  with separate standard errors (not the pooled-variance interaction test, see
  :func:`slope_ttest`).
* Paired comparisons across models or ratios R: Friedman, then pairwise Wilcoxon signed-rank
  (scipy's default: no continuity correction; pingouin corrects by default).
* Unpaired comparisons (groups of different images, e.g. a model that draws its own masks):
  Wilcoxon rank-sum per pair (:func:`pairwise_ranksums`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import scipy.stats
from statsmodels.stats.multitest import multipletests

ADJUSTMENTS = (None, "bonferroni", "holm")


def ranksums_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Wilcoxon rank-sum statistic and two-sided p-value (what the paper calls 'Wilcoxon')."""
    result = scipy.stats.ranksums(np.asarray(a, float), np.asarray(b, float))
    return float(result.statistic), float(result.pvalue)


@dataclass(frozen=True)
class LogLogFit:
    """Least-squares line log(value) = beta0 + beta1·log(size) with 95 % t-intervals."""

    beta0: float
    beta1: float
    se_beta0: float
    se_beta1: float
    ci_beta0: tuple[float, float]
    ci_beta1: tuple[float, float]
    n: int


def loglog_fit(sizes: Sequence[float], values: Sequence[float]) -> LogLogFit:
    """Fit Eq. (5) of the paper; every size and value must be positive (logs are taken)."""
    x_raw, y_raw = np.asarray(sizes, float), np.asarray(values, float)
    if x_raw.shape != y_raw.shape or x_raw.ndim != 1:
        raise ValueError(f"sizes and values must be 1-D of equal length, got {x_raw.shape}, {y_raw.shape}")
    for name, arr in (("sizes", x_raw), ("values", y_raw)):
        if not np.all(np.isfinite(arr) & (arr > 0)):
            raise ValueError(f"log-log fit needs positive finite {name}; got min {np.nanmin(arr)!r}")
    n = x_raw.size
    if n < 3:
        raise ValueError(f"log-log fit needs at least 3 points, got {n}")
    x, y = np.log(x_raw), np.log(y_raw)
    sxx = np.sum((x - x.mean()) ** 2)
    if sxx == 0:
        raise ValueError("log-log fit needs at least two distinct sizes")
    beta1 = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
    beta0 = float(y.mean() - beta1 * x.mean())
    residual_var = np.sum((y - beta0 - beta1 * x) ** 2) / (n - 2)
    se_beta1 = float(math.sqrt(residual_var / sxx))
    se_beta0 = float(math.sqrt(residual_var * (1.0 / n + x.mean() ** 2 / sxx)))
    half = scipy.stats.t.ppf(0.975, n - 2)
    return LogLogFit(
        beta0=beta0,
        beta1=beta1,
        se_beta0=se_beta0,
        se_beta1=se_beta1,
        ci_beta0=(beta0 - half * se_beta0, beta0 + half * se_beta0),
        ci_beta1=(beta1 - half * se_beta1, beta1 + half * se_beta1),
        n=n,
    )


def slope_ttest_from_fits(fit_a: LogLogFit, fit_b: LogLogFit) -> tuple[float, float]:
    """t = (β1b − β1a)/√(se_a² + se_b²) with df = n_a + n_b − 4, two-sided p."""
    t = (fit_b.beta1 - fit_a.beta1) / math.sqrt(fit_a.se_beta1**2 + fit_b.se_beta1**2)
    df = fit_a.n + fit_b.n - 4
    return float(t), float(2.0 * scipy.stats.t.sf(abs(t), df))


def slope_ttest(
    sizes_a: Sequence[float],
    values_a: Sequence[float],
    sizes_b: Sequence[float],
    values_b: Sequence[float],
) -> tuple[float, float]:
    """Test equal log-log slopes of two sets (a = real, b = generated), as the authors did.

    Each set keeps its own residual variance. The interaction term of a pooled OLS model
    ``log v ~ log s * group`` estimates the same slope difference but with one pooled residual
    variance, so its t equals this one only when both sets have the same residual variance and
    differs otherwise; tests/evaluation/test_stats.py checks the exact ratio between the two.
    """
    return slope_ttest_from_fits(loglog_fit(sizes_a, values_a), loglog_fit(sizes_b, values_b))


def friedman_test(*groups: Sequence[float]) -> tuple[float, float]:
    """Friedman χ² and p over k ≥ 3 paired groups (same subjects in the same order)."""
    result = scipy.stats.friedmanchisquare(*(np.asarray(g, float) for g in groups))
    return float(result.statistic), float(result.pvalue)


@dataclass(frozen=True)
class PairwiseResult:
    """One pairwise comparison; ``p_adjusted`` equals ``p`` without adjustment."""

    a: str
    b: str
    statistic: float
    p: float
    p_adjusted: float
    test: str = "signed-rank"  # or "rank-sum" (unpaired groups)

    @property
    def stars(self) -> str:
        return stars(self.p_adjusted)


def pairwise_wilcoxon(
    groups: Mapping[str, Sequence[float]],
    pairs: Sequence[tuple[str, str]] | None = None,
    adjust: str | None = None,
    correction: bool = False,
) -> list[PairwiseResult]:
    """Two-sided Wilcoxon signed-rank tests between named paired groups.

    ``pairs`` defaults to every unordered pair in the mapping's order (Fig. 8); pass e.g.
    ``[("R0", "R1"), ("R0", "R2")]`` for Fig. 9. ``adjust`` is None, "bonferroni" or "holm"
    (statsmodels ``multipletests`` over the listed pairs). No continuity correction by default,
    as in scipy; zero differences are dropped (scipy's "wilcox" zero method).
    """
    if adjust not in ADJUSTMENTS:
        raise ValueError(f"unknown adjustment {adjust!r}; choose one of {ADJUSTMENTS}")
    names = list(groups)
    chosen = list(pairs) if pairs is not None else list(itertools.combinations(names, 2))
    for a, b in chosen:
        for name in (a, b):
            if name not in groups:
                raise ValueError(f"group {name!r} is not among {names}")
    tests = [
        scipy.stats.wilcoxon(np.asarray(groups[a], float), np.asarray(groups[b], float), correction=correction)
        for a, b in chosen
    ]
    p_values = np.array([float(t.pvalue) for t in tests])
    adjusted = multipletests(p_values, method=adjust)[1] if adjust and len(p_values) else p_values
    return [
        PairwiseResult(a=a, b=b, statistic=float(t.statistic), p=float(p), p_adjusted=float(q))
        for (a, b), t, p, q in zip(chosen, tests, p_values, adjusted, strict=True)
    ]


def pairwise_ranksums(groups: Mapping[str, Sequence[float]], pairs: Sequence[tuple[str, str]]) -> list[PairwiseResult]:
    """Two-sided Wilcoxon rank-sum tests between named groups of different subjects (no pairing)."""
    results = []
    for a, b in pairs:
        statistic, p = ranksums_test(groups[a], groups[b])
        results.append(PairwiseResult(a=a, b=b, statistic=statistic, p=p, p_adjusted=p, test="rank-sum"))
    return results


def stars(p: float) -> str:
    """Significance stars of the paper's Figs. 8–9.

    "" for p ≥ 0.05 (p = 0.05 is not significant), "*" for 0.01 < p < 0.05, "**" for
    0.001 < p ≤ 0.01 (so p = 0.01 gets "**"), "***" for 0.0001 < p ≤ 0.001, "****" for
    p ≤ 0.0001. A NaN p-value (e.g. Wilcoxon on identical groups) gives "n/a", never "".
    """
    if math.isnan(p):
        return "n/a"
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p-value must lie in [0, 1], got {p}")
    if p >= 0.05:
        return ""
    for threshold, label in ((0.0001, "****"), (0.001, "***"), (0.01, "**")):
        if p <= threshold:
            return label
    return "*"


K = TypeVar("K")


def rank_ready(groups: Mapping[K, np.ndarray]) -> dict[K, np.ndarray]:
    """Replace +inf (HD95 of an empty prediction) by a finite value worse than any finite one,
    for the rank-based tests.

    The surrogate exceeds the largest finite value by more than the finite range, so an empty
    prediction ranks last in Friedman and its difference ranks first in the signed-rank test;
    two empty predictions tie (difference 0, dropped by the test).
    """
    finite = np.concatenate([g[np.isfinite(g)] for g in groups.values()]) if groups else np.zeros(0)
    top = float(finite.max()) if finite.size else 0.0
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    return {k: np.where(np.isposinf(v), top + 2.0 * span + 1.0, v) for k, v in groups.items()}
