"""Checks of iusdiff.evaluation.stats against pingouin, statsmodels and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pingouin
import pytest
import scipy.stats
import statsmodels.formula.api as smf
from statsmodels.regression.linear_model import RegressionResultsWrapper
from statsmodels.stats.multitest import multipletests

from iusdiff.evaluation import stats


@pytest.fixture(scope="module")
def paired() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    base = rng.normal(size=30)
    return {
        "pix2pix": base + rng.normal(0.0, 0.5, 30),
        "proposed": base + rng.normal(0.4, 0.5, 30),
        "controlnet": base + rng.normal(0.1, 0.5, 30),
        "one-step": base + rng.normal(0.8, 0.5, 30),
    }


def loglog_sample(rng: np.random.Generator, n: int, slope: float, noise: float) -> tuple[np.ndarray, np.ndarray]:
    sizes = rng.uniform(0.01, 0.3, n)
    values = np.exp(11.0 + slope * np.log(sizes) + rng.normal(0.0, noise, n))
    return sizes, values


def test_ranksums_matches_normal_approximation_without_tie_correction() -> None:
    a, b = np.array([1.0, 2.0, 3.5, 7.0, 9.0]), np.array([4.0, 5.0, 6.0, 8.0, 10.0, 11.0])
    ranks = scipy.stats.rankdata(np.r_[a, b])[: len(a)]
    n1, n2 = len(a), len(b)
    z = (ranks.sum() - n1 * (n1 + n2 + 1) / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    stat, p = stats.ranksums_test(a, b)
    assert stat == pytest.approx(z)
    assert p == pytest.approx(2 * scipy.stats.norm.sf(abs(z)))


def test_friedman_equals_pingouin(paired: dict[str, np.ndarray]) -> None:
    n = len(paired["proposed"])
    frame = pd.DataFrame(
        {
            "subject": np.tile(np.arange(n), len(paired)),
            "model": np.repeat(list(paired), n),
            "value": np.concatenate(list(paired.values())),
        }
    )
    reference = pingouin.friedman(data=frame, dv="value", within="model", subject="subject", method="chisq")
    chi2, p = stats.friedman_test(*paired.values())
    assert chi2 == pytest.approx(float(reference["Q"].iloc[0]))
    assert p == pytest.approx(float(reference["p_unc"].iloc[0]))


def test_pairwise_wilcoxon_equals_pingouin_without_correction(paired: dict[str, np.ndarray]) -> None:
    results = stats.pairwise_wilcoxon(paired)
    assert [(r.a, r.b) for r in results][:3] == [
        ("pix2pix", "proposed"),
        ("pix2pix", "controlnet"),
        ("pix2pix", "one-step"),
    ]
    assert len(results) == 6
    for r in results:
        reference = pingouin.wilcoxon(paired[r.a], paired[r.b], correction=False)
        assert r.p == pytest.approx(float(reference["p_val"].iloc[0]))
        assert r.statistic == pytest.approx(float(reference["W_val"].iloc[0]))
        assert r.p_adjusted == r.p


@pytest.mark.parametrize("method", ["bonferroni", "holm"])
def test_pairwise_wilcoxon_adjustment(paired: dict[str, np.ndarray], method: str) -> None:
    pairs = [("proposed", "pix2pix"), ("proposed", "controlnet"), ("proposed", "one-step")]
    results = stats.pairwise_wilcoxon(paired, pairs=pairs, adjust=method)
    raw = np.array([r.p for r in results])
    np.testing.assert_allclose([r.p_adjusted for r in results], multipletests(raw, method=method)[1])
    assert all(r.p_adjusted >= r.p for r in results)
    assert results[0].stars == stats.stars(results[0].p_adjusted)


def test_pairwise_wilcoxon_rejects_unknown_names_and_methods(paired: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="'R9'"):
        stats.pairwise_wilcoxon(paired, pairs=[("proposed", "R9")])
    with pytest.raises(ValueError, match="adjustment"):
        stats.pairwise_wilcoxon(paired, adjust="fdr")


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.5, ""),
        (0.05, ""),
        (0.0499, "*"),
        (0.0101, "*"),
        (0.01, "**"),
        (0.0011, "**"),
        (0.001, "***"),
        (0.00011, "***"),
        (0.0001, "****"),
        (0.0, "****"),
        (math.nan, "n/a"),
    ],
)
def test_stars_boundaries(p: float, expected: str) -> None:
    assert stats.stars(p) == expected


def test_stars_rejects_impossible_p() -> None:
    with pytest.raises(ValueError):
        stats.stars(1.5)


def test_loglog_fit_equals_statsmodels_ols() -> None:
    rng = np.random.default_rng(2)
    sizes, values = loglog_sample(rng, 60, slope=1.1, noise=0.4)
    fit = stats.loglog_fit(sizes, values)
    ols = smf.ols("y ~ x", data=pd.DataFrame({"x": np.log(sizes), "y": np.log(values)})).fit()
    assert (fit.beta0, fit.beta1) == pytest.approx(tuple(ols.params), rel=1e-10)
    assert (fit.se_beta0, fit.se_beta1) == pytest.approx(tuple(ols.bse), rel=1e-10)
    ci = ols.conf_int(0.05).to_numpy()
    assert fit.ci_beta0 == pytest.approx(tuple(ci[0]), rel=1e-10)
    assert fit.ci_beta1 == pytest.approx(tuple(ci[1]), rel=1e-10)
    assert fit.n == 60


def test_loglog_fit_rejects_non_positive_input() -> None:
    with pytest.raises(ValueError, match="positive finite values"):
        stats.loglog_fit([0.1, 0.2, 0.3], [1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="positive finite sizes"):
        stats.loglog_fit([0.1, -0.2, 0.3], [1.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="at least 3"):
        stats.loglog_fit([0.1, 0.2], [1.0, 2.0])


def _interaction_model(
    sa: np.ndarray, va: np.ndarray, sb: np.ndarray, vb: np.ndarray
) -> RegressionResultsWrapper:
    """Pooled OLS ``log v ~ log s * gen``: its ``x:gen`` term is the slope difference."""
    frame = pd.DataFrame(
        {
            "x": np.log(np.r_[sa, sb]),
            "y": np.log(np.r_[va, vb]),
            "gen": np.r_[np.zeros(len(sa)), np.ones(len(sb))],
        }
    )
    return smf.ols("y ~ x * gen", data=frame).fit()


def test_slope_ttest_versus_pooled_interaction_model() -> None:
    """Same slope difference; t differs only through pooled vs separate residual variances.

    With s² the residual variances and Sxx the centred sums of squares of log size:
    t_ours / t_ols = sqrt(s²_pooled (1/Sxx_a + 1/Sxx_b)) / sqrt(s²_a/Sxx_a + s²_b/Sxx_b),
    s²_pooled = (RSS_a + RSS_b) / (n_a + n_b − 4). Here (residual SDs 0.2 vs 0.6, unequal n) the
    separate-variance t is about 0.90 times the pooled one.
    """
    rng = np.random.default_rng(4)
    sa, va = loglog_sample(rng, 80, slope=1.0, noise=0.2)
    sb, vb = loglog_sample(rng, 50, slope=1.15, noise=0.6)
    t, p = stats.slope_ttest(sa, va, sb, vb)
    ols = _interaction_model(sa, va, sb, vb)
    fa, fb = stats.loglog_fit(sa, va), stats.loglog_fit(sb, vb)
    assert ols.params["x:gen"] == pytest.approx(fb.beta1 - fa.beta1, rel=1e-9)
    assert ols.df_resid == len(sa) + len(sb) - 4

    def sxx(s: np.ndarray) -> float:
        return float(np.sum((np.log(s) - np.log(s).mean()) ** 2))

    var_a, var_b = (fa.se_beta1**2) * sxx(sa), (fb.se_beta1**2) * sxx(sb)
    pooled = ((len(sa) - 2) * var_a + (len(sb) - 2) * var_b) / (len(sa) + len(sb) - 4)
    ratio = math.sqrt(pooled * (1 / sxx(sa) + 1 / sxx(sb))) / math.sqrt(var_a / sxx(sa) + var_b / sxx(sb))
    assert t / ols.tvalues["x:gen"] == pytest.approx(ratio, rel=1e-9)
    assert ratio == pytest.approx(0.90, abs=0.01)  # the two tests really differ here
    assert p == pytest.approx(2 * scipy.stats.t.sf(abs(t), len(sa) + len(sb) - 4))


def test_slope_ttest_equals_interaction_model_when_residual_variances_match() -> None:
    rng = np.random.default_rng(5)
    sizes = rng.uniform(0.01, 0.3, 40)
    noise = rng.normal(0.0, 0.3, 40)
    va = np.exp(10.0 + 1.0 * np.log(sizes) + noise)
    vb = np.exp(10.5 + 1.3 * np.log(sizes) + noise)  # same sizes and residuals, other line
    t, p = stats.slope_ttest(sizes, va, sizes, vb)
    ols = _interaction_model(sizes, va, sizes, vb)
    assert t == pytest.approx(ols.tvalues["x:gen"], rel=1e-9)
    assert p == pytest.approx(ols.pvalues["x:gen"], rel=1e-9)
