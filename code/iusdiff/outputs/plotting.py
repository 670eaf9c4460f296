"""Figure conventions shared by every figure: one style, deterministic bytes, PNG + PDF.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot global state, no GUI
backend). Matplotlib stamps its version into PNGs and a creation date into PDFs; both are
blanked so the same figure always hashes the same and the checksum manifest stays stable.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from iusdiff.io import atomic_path

TEXT_WIDTH_IN = 7.0  # the journal's full text width
MASK_COLOUR = "#4fc3f7"  # light blue, like the paper's mask overlays
STYLE = {
    "font.size": 7,
    "axes.titlesize": 7.5,
    "axes.labelsize": 7,
    "legend.fontsize": 6,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "lines.linewidth": 1.0,
    "pdf.fonttype": 42,
}
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None, "Creator": None}}


def label_text(labels: Sequence[str], width_in: float, fontsize: float) -> str:
    """Provenance labels as lines that fit a figure ``width_in`` inches wide at ``fontsize`` pt
    (about 0.55 em per character), so a long label (a deviation) is wrapped, never cut off."""
    chars = max(40, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join(line for label in labels for line in textwrap.wrap(label, chars))


def save_figure(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 300) -> list[Path]:
    """Write ``<stem>.<fmt>`` atomically for each format, with reproducible metadata.

    Constrained layout alternates between two solutions on successive draws, so the layout is
    computed once here and then frozen; after that every save gives the same bytes.
    """
    if fig.get_layout_engine() is not None:
        with rc_context(STYLE):
            fig.draw_without_rendering()
        fig.set_layout_engine("none")
    base = Path(stem)
    written = []
    for fmt in formats:
        target = base.with_name(f"{base.name}.{fmt}")
        with atomic_path(target) as tmp, rc_context(STYLE):
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_METADATA.get(fmt))
        written.append(target)
    return written


def slice_montage(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], titles: Sequence[str], columns: int = 6
) -> Figure:
    """Grid of grayscale slices with their tumour outline drawn on top."""
    rows = -(-len(images) // columns)
    panel = TEXT_WIDTH_IN / columns
    with rc_context(STYLE):
        fig = Figure(figsize=(TEXT_WIDTH_IN, rows * panel * 1.08), layout="constrained")
        axes = fig.subplots(rows, columns, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, image, mask, title in zip(axes.flat, images, masks, titles):
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            if mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=MASK_COLOUR, linewidths=0.6)
            ax.set_title(title)
    return fig
