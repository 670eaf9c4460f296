"""Figures about tumour masks: Fig. 4 (how ESD is computed) and Fig. 6 (size–shape per fold).

Figures are sized for the journal's full text width (about 7 in) with 7–8 pt text, and saved
by :func:`iusdiff.outputs.plotting.save_figure` without timestamps or version strings in the metadata, so the same
figure gives the same bytes on every run. Figures are built without pyplot (no global state,
no GUI backend, nothing to close).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from iusdiff.evaluation.metrics import esd_signals
from iusdiff.evaluation.stats import loglog_fit, ranksums_test
from iusdiff.outputs.plotting import STYLE, TEXT_WIDTH_IN

REAL_COLOUR = "tab:purple"
GEN_COLOUR = "tab:green"


def fig4(mask: np.ndarray) -> Figure:
    """Three panels: contour points and centroid; radial distance d with its mean; the power
    spectrum |FFT(d − d̄)|²/(N/2) with the area whose sum is the ESD shaded."""
    signals = esd_signals(mask)
    n = len(signals.d)
    with rc_context(STYLE):
        fig = Figure(figsize=(TEXT_WIDTH_IN, 2.3), layout="constrained")
        ax_mask, ax_d, ax_psd = fig.subplots(1, 3)
        ax_mask.imshow(np.asarray(mask) > 0.5, cmap="gray", interpolation="nearest")
        ax_mask.scatter(*signals.points.T, s=4, c="gold", label="contour points")
        ax_mask.scatter(*signals.centroid, s=40, c="darkorange", marker="*", label="centroid")
        ax_mask.set_title("Mask, contour points, centroid")
        ax_mask.legend(loc="lower left", framealpha=0.8)
        ax_mask.set_axis_off()

        ax_d.plot(np.arange(n), signals.d, color="tab:red")
        ax_d.axhline(signals.d.mean(), color="tab:red", ls="--", label=r"mean $\bar{d}$")
        ax_d.set_xlabel("contour point index")
        ax_d.set_ylabel(r"distance to centroid $d$ [px]")
        ax_d.set_title("Radial distance")
        ax_d.legend()
        ax_d.grid(ls=":", lw=0.5)

        freq = np.arange(n)
        ax_psd.plot(freq, signals.psd, color="tab:blue")
        ax_psd.fill_between(freq, signals.psd, color="tab:blue", alpha=0.3, label="sum = ESD")
        ax_psd.set_xlabel("frequency bin $f$ (all N bins)")
        ax_psd.set_ylabel(r"$|\mathcal{F}_f(d-\bar{d})|^2/(N/2)$ [px$^2$]")
        ax_psd.set_title(f"Power spectrum, ESD = {signals.esd:.4g} px²")
        ax_psd.legend()
        ax_psd.grid(ls=":", lw=0.5)
    return fig


@dataclass(frozen=True)
class FoldShape:
    """Sizes and ESDs of one fold's real (training) and generated masks."""

    real_size: np.ndarray
    real_esd: np.ndarray
    gen_size: np.ndarray
    gen_esd: np.ndarray
    label: str


_FOLD_KEYS = ("real_size", "real_esd", "gen_size", "gen_esd")


def _as_fold(item: FoldShape | Mapping | object, index: int) -> FoldShape:
    """Accept a FoldShape, a mapping or any object with the four array attributes.

    Non-finite entries are an error rather than silently dropped: a mask without ESD (empty)
    must be left out, and counted, by the caller.
    """
    if isinstance(item, FoldShape):
        return item
    get = item.get if isinstance(item, Mapping) else lambda key, default=None: getattr(item, key, default)
    missing = [key for key in _FOLD_KEYS if get(key) is None]
    if missing:
        raise ValueError(f"fold {index + 1}: missing {missing}; expected keys {_FOLD_KEYS}")
    arrays = {key: np.asarray(get(key), dtype=float) for key in _FOLD_KEYS}
    for key, array in arrays.items():
        if array.ndim != 1 or not np.isfinite(array).all():
            raise ValueError(f"fold {index + 1}: {key} must be a 1-D array of finite numbers")
    return FoldShape(**arrays, label=str(get("label") or f"Fold {index + 1}"))


def _histograms(ax: Axes, real: np.ndarray, gen: np.ndarray, xlabel: str) -> None:
    bins = np.histogram_bin_edges(np.concatenate([real, gen]), bins="auto")
    ax.hist(real, bins=bins, color=REAL_COLOUR, alpha=0.5, label=f"real (n={real.size})")
    ax.hist(gen, bins=bins, color=GEN_COLOUR, alpha=0.5, label=f"generated (n={gen.size})")
    _, p = ranksums_test(real, gen)
    ax.set_title(f"rank-sum p = {p:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend()


def _loglog_panel(ax: Axes, fold: FoldShape) -> None:
    for size, value, colour, name in (
        (fold.real_size, fold.real_esd, REAL_COLOUR, "real"),
        (fold.gen_size, fold.gen_esd, GEN_COLOUR, "generated"),
    ):
        keep = (size > 0) & (value > 0)
        fit = loglog_fit(size[keep], value[keep])
        ax.scatter(size[keep], value[keep], s=3, color=colour, alpha=0.4, linewidths=0)
        grid = np.geomspace(size[keep].min(), size[keep].max(), 50)
        dropped = f", {int((~keep).sum())} with ESD 0 left out" if (~keep).any() else ""
        ax.plot(
            grid,
            np.exp(fit.beta0) * grid**fit.beta1,
            color=colour,
            label=rf"{name}: $\beta_1$ = {fit.beta1:.2f}{dropped}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # minor labels on a short log range overlap each other
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("tumour size")
    ax.set_ylabel("ESD [px²]")
    ax.set_title("log ESD = β0 + β1 log size")
    ax.legend()


def fig6(per_fold: Sequence[FoldShape | Mapping | object]) -> Figure:
    """One row per fold: size histograms, ESD histograms, log-log scatter with both fits.

    Each item holds ``real_size``, ``real_esd``, ``gen_size``, ``gen_esd`` (and optionally
    ``label``), all finite. Masks with ESD 0 (e.g. axis-aligned rectangles) cannot enter the log
    fit; the legend says how many were left out of it.
    """
    folds = [_as_fold(item, i) for i, item in enumerate(per_fold)]
    if not folds:
        raise ValueError("fig6 needs at least one fold")
    with rc_context(STYLE):
        fig = Figure(figsize=(TEXT_WIDTH_IN, 1.9 * len(folds)), layout="constrained")
        axes = fig.subplots(len(folds), 3, squeeze=False)
        for row, fold in zip(axes, folds, strict=True):
            _histograms(row[0], fold.real_size, fold.gen_size, "tumour size (fraction of pixels)")
            _histograms(row[1], fold.real_esd, fold.gen_esd, "ESD [px²]")
            row[1].ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
            _loglog_panel(row[2], fold)
            row[0].annotate(
                fold.label, xy=(0, 0.5), xycoords="axes fraction", xytext=(-32, 0),
                textcoords="offset points", rotation=90, va="center", ha="right", fontweight="bold",
            )
    return fig
