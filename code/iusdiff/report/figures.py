"""Figures of generated images: Figs. 3, 5, 7, 8, 10 and a contact sheet of the four models.

Builders take arrays (uint8 images, {0,1} masks) chosen by ``code/make_figures.py`` and
``code/evaluate_images.py`` and return a ``matplotlib.figure.Figure`` in the paper-like style of
:mod:`iusdiff.outputs.plotting`; a model without samples is drawn as a labelled empty panel, never
left out silently. Every figure carries its provenance labels (profile, stand-ins) as a footer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from iusdiff.evaluation.fidelity import MODELS, ModelComparison, squared_distances
from iusdiff.outputs.plotting import MASK_COLOUR, STYLE, TEXT_WIDTH_IN, label_text

Pair = tuple[np.ndarray, np.ndarray]  # (uint8 image, {0,1} mask)
ZOOM_COLOUR = "#ffd600"  # yellow, as the paper's boxes and arrows
MODEL_COLOURS = {"pix2pix": "#fdae6b", "proposed": "#9ecae1", "controlnet": "#a1d99b", "onestep": "#bcbddc"}


# ---------------------------------------------------------------------------------------------
# Panels


def _image(ax: Axes, image: np.ndarray, mask: np.ndarray | None = None, title: str = "", fill: bool = False) -> None:
    """Grayscale image with the mask's outline (and a light fill, as the paper's Fig. 3)."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if mask is not None and mask.any():
        if fill:
            overlay = np.zeros((*mask.shape, 4))
            overlay[mask > 0] = (0.31, 0.76, 0.97, 0.35)
            ax.imshow(overlay, interpolation="nearest")
        ax.contour(mask.astype(float), levels=[0.5], colors=MASK_COLOUR, linewidths=0.7)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _mask(ax: Axes, mask: np.ndarray, title: str = "") -> None:
    ax.imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _missing(ax: Axes, text: str, title: str = "") -> None:
    """A labelled empty panel standing in for a model set that does not exist."""
    ax.set_facecolor("#eeeeee")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=5.5, wrap=True, transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def zoom_box(mask: np.ndarray, margin: float = 0.35, minimum: int = 16) -> tuple[int, int, int, int]:
    """Square crop (row0, row1, col0, col1) around the tumour with a margin, inside the image."""
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    if not rows.size:
        return 0, height, 0, width
    side = max(int(np.ptp(rows)) + 1, int(np.ptp(cols)) + 1)
    side = min(max(int(round(side * (1 + 2 * margin))), minimum), height, width)
    centre_r, centre_c = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    r0 = int(np.clip(centre_r - side // 2, 0, height - side))
    c0 = int(np.clip(centre_c - side // 2, 0, width - side))
    return r0, r0 + side, c0, c0 + side


def _footer(fig: Figure, labels: Sequence[str]) -> None:
    if labels:
        fig.supxlabel(label_text(labels, fig.get_figwidth(), 5.5), fontsize=5.5)


def _figure(rows: int, columns: int, row_height: float, labels: Sequence[str]) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(TEXT_WIDTH_IN, rows * row_height + 0.12 * len(labels) + 0.1), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.02, w_pad=0.02, hspace=0.02, wspace=0.02)
    return fig, fig.subplots(rows, columns, squeeze=False)


# ---------------------------------------------------------------------------------------------
# Fig. 3: dataset examples


def fig3(examples: Sequence[tuple[np.ndarray, np.ndarray, str]], labels: Sequence[str] = ()) -> Figure:
    """Real slices (top) and the same with the tumour mask in light blue (bottom)."""
    with rc_context(STYLE):
        fig, axes = _figure(2, len(examples), TEXT_WIDTH_IN / len(examples), labels)
        for column, (image, mask, title) in enumerate(examples):
            _image(axes[0, column], image, title=title)
            _image(axes[1, column], image, mask, fill=True)
        axes[0, 0].set_ylabel("iUS")
        axes[1, 0].set_ylabel("iUS + tumour mask")
        _footer(fig, labels)
    return fig


# ---------------------------------------------------------------------------------------------
# Fig. 5: one-step generations against their nearest training image


@dataclass(frozen=True)
class NearestPair:
    """A generated pair, the training pair nearest to it (L2 on images) and their SD map."""

    real: Pair
    generated: Pair
    sd: np.ndarray  # squared difference of intensities scaled to [0, 1]
    title: str


def nearest_training(image: np.ndarray, training: np.ndarray) -> int:
    """Index of the training image closest to ``image`` in L2 (training: N×H×W uint8)."""
    return int(np.argmin(squared_distances(image[None], training)[0]))


def squared_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a.astype(np.float32) - b.astype(np.float32)) / 255.0) ** 2


def fig5(rows: Sequence[NearestPair] | None, labels: Sequence[str] = (), missing: str = "") -> Figure:
    """Columns: nearest real training pair, one-step generated pair, SD map (per row)."""
    titles = ("Real pair\n(nearest training image)", "Generated pair\n(one-step)", "SD map\n(squared difference)")
    with rc_context(STYLE):
        count = len(rows) if rows else 1
        fig = Figure(figsize=(TEXT_WIDTH_IN * 0.62, count * 1.45 + 0.12 * len(labels) + 0.3), layout="constrained")
        axes = fig.subplots(count, 3, squeeze=False)
        if not rows:
            for column, ax in enumerate(axes[0]):
                _missing(ax, missing, titles[column])
        for r, row in enumerate(rows or ()):
            _image(axes[r, 0], *row.real, title=titles[0] if r == 0 else "")
            _image(axes[r, 1], *row.generated, title=titles[1] if r == 0 else "")
            shown = axes[r, 2].imshow(row.sd, cmap="magma", vmin=0, vmax=max(float(row.sd.max()), 1e-6), interpolation="nearest")
            axes[r, 2].set_title(titles[2] if r == 0 else "")
            axes[r, 2].set_xticks([])
            axes[r, 2].set_yticks([])
            fig.colorbar(shown, ax=axes[r, 2], fraction=0.046, pad=0.02)
            axes[r, 0].set_ylabel(row.title)
        _footer(fig, labels)
    return fig


# ---------------------------------------------------------------------------------------------
# Fig. 7 and the contact sheet: several models on the same masks


def _model_panel(ax: Axes, pair: Pair | None, reference: np.ndarray, title: str, model: str) -> None:
    if pair is None:
        _missing(ax, f"{MODELS[model]}:\nno samples", title)
        return
    _image(ax, pair[0], pair[1], title=title)
    if not np.array_equal(pair[1], reference):
        ax.text(0.03, 0.03, "own mask", color=ZOOM_COLOUR, fontsize=5, transform=ax.transAxes, va="bottom")


def fig7(masks: Sequence[np.ndarray], panels: Mapping[str, Sequence[Pair | None]], labels: Sequence[str] = ()) -> Figure:
    """Per row: the mask, then for each model its image with the mask outlined and a zoom on the
    tumour (the zoomed area boxed in yellow). A model conditioned on another mask at that index
    says so ("own mask") and is outlined with its own."""
    models = list(panels)
    with rc_context(STYLE):
        fig, axes = _figure(len(masks), 1 + 2 * len(models), TEXT_WIDTH_IN / (1 + 2 * len(models)) * 1.05, labels)
        for r, mask in enumerate(masks):
            _mask(axes[r, 0], mask, "Input mask" if r == 0 else "")
            for m, model in enumerate(models):
                pair = panels[model][r]
                full, zoom = axes[r, 1 + 2 * m], axes[r, 2 + 2 * m]
                _model_panel(full, pair, mask, MODELS[model] if r == 0 else "", model)
                if pair is None:
                    _missing(zoom, "—", "zoom" if r == 0 else "")
                    continue
                r0, r1, c0, c1 = zoom_box(pair[1])
                full.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, ec=ZOOM_COLOUR, lw=0.7))
                _image(zoom, pair[0][r0:r1, c0:c1], pair[1][r0:r1, c0:c1], title="zoom" if r == 0 else "")
        _footer(fig, labels)
    return fig


def contact_sheet(masks: Sequence[np.ndarray], panels: Mapping[str, Sequence[Pair | None]], labels: Sequence[str] = ()) -> Figure:
    """Rows: the same conditioning masks; columns: the mask, then each model's image with it outlined."""
    models = list(panels)
    with rc_context(STYLE):
        fig, axes = _figure(len(masks), 1 + len(models), TEXT_WIDTH_IN / (1 + len(models)), labels)
        for r, mask in enumerate(masks):
            _mask(axes[r, 0], mask, "Mask" if r == 0 else "")
            for m, model in enumerate(models):
                _model_panel(axes[r, 1 + m], panels[model][r], mask, MODELS[model] if r == 0 else "", model)
        _footer(fig, labels)
    return fig


# ---------------------------------------------------------------------------------------------
# Fig. 10: proposed pairs by tumour size


def fig10(groups: Mapping[str, Sequence[Pair]], labels: Sequence[str] = (), missing: str = "") -> Figure:
    """Columns grouped by size regime (small, intermediate, large): mask on top, image below."""
    columns = [(regime, pair) for regime, pairs in groups.items() for pair in pairs]
    with rc_context(STYLE):
        if not columns:
            fig, axes = _figure(1, 1, 1.6, labels)
            _missing(axes[0, 0], missing)
            _footer(fig, labels)
            return fig
        fig, axes = _figure(2, len(columns), TEXT_WIDTH_IN / len(columns), labels)
        for c, (regime, (image, mask)) in enumerate(columns):
            _mask(axes[0, c], mask, f"{regime}\nsize {mask.mean():.3f}")
            _image(axes[1, c], image, mask)
        axes[0, 0].set_ylabel("generated mask")
        axes[1, 0].set_ylabel("generated iUS")
        _footer(fig, labels)
    return fig


# ---------------------------------------------------------------------------------------------
# Fig. 8: DSC and HD95 per model with Friedman and pairwise Wilcoxon


_TITLES = {"dice": "DSC", "hd95": "HD95 [px]"}


def _p_text(p: float) -> str:
    return "p < 0.0001" if p < 0.0001 else f"p = {p:.4f}" if p < 0.001 else f"p = {p:.3f}"


def _comparison_panel(ax: Axes, comparison: ModelComparison) -> None:
    models = list(comparison.values)
    if not models or not len(next(iter(comparison.values.values()))):
        _missing(ax, "no DSC/HD95: no fold had a segmenter", _TITLES[comparison.metric])
        return
    data = [comparison.values[m][np.isfinite(comparison.values[m])] for m in models]
    positions = np.arange(len(models))
    boxes = ax.boxplot(data, positions=positions, widths=0.55, patch_artist=True, showfliers=False,
                       medianprops={"color": "black"})
    for box, model in zip(boxes["boxes"], models):
        box.set_facecolor(MODEL_COLOURS[model])
    for x, values in zip(positions, data):
        jitter = np.random.default_rng(int(x)).uniform(-0.15, 0.15, values.size)
        ax.scatter(x + jitter, values, s=2, color="black", alpha=0.35, linewidths=0, zorder=3)
    names = []
    for model in models:
        n_inf = int(np.isinf(comparison.values[model]).sum())
        names.append(MODELS[model] + (f"\n({n_inf} empty)" if n_inf else ""))
    ax.set_xticks(positions, names)
    counts = [f"{len(comparison.values[comparison.paired[0]])} paired images"] if comparison.paired else []
    counts += [f"{MODELS[m]} {len(comparison.values[m])} own" for m in models if m not in comparison.paired]
    title = _TITLES[comparison.metric] + f" (n = {', '.join(counts)})"
    if comparison.friedman is not None and np.isfinite(comparison.friedman[0]):
        title += f"\nFriedman χ² = {comparison.friedman[0]:.1f}, {_p_text(comparison.friedman[1])}"
    ax.set_title(title)
    ax.set_ylabel(_TITLES[comparison.metric])
    ax.grid(axis="y", ls=":", lw=0.5)
    finite = np.concatenate(data) if any(d.size for d in data) else np.zeros(1)
    top, span = float(finite.max()), float(np.ptp(finite)) or 1.0
    spans = sorted((abs(models.index(r.b) - models.index(r.a)), min(models.index(r.a), models.index(r.b)), r) for r in comparison.pairwise)
    for level, (_, _, result) in enumerate(spans):  # short brackets low, long ones above them
        a, b = models.index(result.a), models.index(result.b)
        y = top + span * (0.06 + 0.08 * level)
        style = "-" if result.test == "signed-rank" else "--"  # dashed: rank-sum, unpaired
        ax.plot([a, a, b, b], [y - span * 0.02, y, y, y - span * 0.02], color="black", lw=0.6, ls=style)
        ax.text((a + b) / 2, y, result.stars or "ns", ha="center", va="bottom", fontsize=5.5)
    ax.set_ylim(top=top + span * (0.12 + 0.08 * len(comparison.pairwise)))


def fig8(comparisons: Mapping[str, ModelComparison], labels: Sequence[str] = ()) -> Figure:
    """Two panels (DSC, HD95): per-image values of every model pooled over the folds, Friedman
    over the paired models in the titles, pairwise tests as brackets (* p < 0.05 … **** p ≤ 0.0001,
    ns otherwise): solid for signed-rank on paired images, dashed for rank-sum (a model with its
    own masks)."""
    with rc_context(STYLE):
        fig = Figure(figsize=(TEXT_WIDTH_IN, 3.0 + 0.1 * len(labels)), layout="constrained")
        for ax, metric in zip(fig.subplots(1, 2), ("dice", "hd95")):
            _comparison_panel(ax, comparisons[metric])
        _footer(fig, labels)
    return fig

