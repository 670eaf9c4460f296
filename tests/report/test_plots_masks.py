"""Fig. 4 and Fig. 6 render, save as PNG + PDF, and save reproducibly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from iusdiff.evaluation import metrics
from iusdiff.outputs.plotting import save_figure
from iusdiff.report import plots_masks


def blob(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Random star-shaped mask with a few harmonics."""
    theta = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    harmonics = sum(rng.uniform(0, 0.15) * np.cos(k * theta + rng.uniform(0, 6)) for k in (2, 3, 5))
    r = rng.uniform(4, 20) * (1 + harmonics)
    pts = np.stack([size / 2 + r * np.cos(theta), size / 2 + r * np.sin(theta)], axis=1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pts.round().astype(np.int32)], 1)
    return mask


def fold_stats(rng: np.random.Generator, n: int = 25) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for kind in ("real", "gen"):
        masks = [blob(rng) for _ in range(n)]
        out[f"{kind}_size"] = [metrics.tumour_size(m) for m in masks]
        out[f"{kind}_esd"] = [metrics.esd(m) for m in masks]
    return out


def _saved_bytes(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def test_fig4_writes_png_and_pdf_reproducibly(tmp_path: Path) -> None:
    fig = plots_masks.fig4(blob(np.random.default_rng(0)))
    first = save_figure(fig, tmp_path / "fig4")
    assert [p.name for p in first] == ["fig4.png", "fig4.pdf"]
    assert all(p.stat().st_size > 1000 for p in first)
    assert first[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and first[1].read_bytes()[:5] == b"%PDF-"
    second = save_figure(fig, tmp_path / "again")
    assert _saved_bytes(first) == _saved_bytes(second)
    rebuilt = save_figure(plots_masks.fig4(blob(np.random.default_rng(0))), tmp_path / "rebuilt")
    assert _saved_bytes(first) == _saved_bytes(rebuilt)
    assert not list(tmp_path.glob("*.tmp"))


def test_fig4_title_reports_the_esd() -> None:
    mask = blob(np.random.default_rng(1))
    fig = plots_masks.fig4(mask)
    assert f"{metrics.esd(mask):.4g}" in fig.axes[2].get_title()


def test_fig6_rows_per_fold_and_reproducible_save(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    as_dataclass = plots_masks.FoldShape(**{k: np.asarray(v) for k, v in fold_stats(rng).items()}, label="F2")
    folds = [fold_stats(rng), as_dataclass]
    fig = plots_masks.fig6(folds)
    assert len(fig.axes) == 6
    legend = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert any("β_1" in t or r"\beta_1" in t for t in legend)
    first = save_figure(fig, tmp_path / "fig6")
    assert all(p.stat().st_size > 1000 for p in first)
    assert _saved_bytes(first) == _saved_bytes(save_figure(fig, tmp_path / "fig6b"))


def test_fig6_rejects_incomplete_or_non_finite_fold() -> None:
    with pytest.raises(ValueError, match="gen_esd"):
        plots_masks.fig6([{"real_size": [0.1], "real_esd": [1.0], "gen_size": [0.1]}])
    with pytest.raises(ValueError, match="fold 1: real_esd"):
        plots_masks.fig6([{"real_size": [0.1], "real_esd": [np.nan], "gen_size": [0.1], "gen_esd": [1.0]}])
