"""Figure builders of iusdiff.report.figures and make_figures.py on tiny stand-in sets."""

from __future__ import annotations

import numpy as np
import pytest

from iusdiff.evaluation.fidelity import ModelComparison, PerImage, compare_models
from iusdiff.outputs.plotting import save_figure
from iusdiff.report.figures import contact_sheet, fig8, fig10, nearest_training, squared_difference, zoom_box

from helpers import SIZE, blob_pair, blob_samples, blob_slices, run_script


def test_zoom_box_is_a_square_around_the_tumour_inside_the_image():
    mask = np.zeros((64, 64), np.uint8)
    mask[50:60, 55:62] = 1
    r0, r1, c0, c1 = zoom_box(mask)
    assert r1 - r0 == c1 - c0 >= 10 and 0 <= r0 <= 50 and r1 >= 60 and c1 <= 64 and c0 <= 55
    assert zoom_box(np.zeros((8, 8), np.uint8)) == (0, 8, 0, 8)


def test_nearest_training_image_and_squared_difference():
    rng = np.random.default_rng(0)
    training = rng.integers(0, 256, (5, SIZE, SIZE), dtype=np.uint8)
    query = np.clip(training[3].astype(int) + 2, 0, 255).astype(np.uint8)
    assert nearest_training(query, training) == 3
    sd = squared_difference(query, training[3])
    assert sd.shape == (SIZE, SIZE) and 0.0 <= sd.max() <= (2 / 255) ** 2 + 1e-9


def test_builders_write_png_and_pdf_with_missing_models_as_panels(tmp_path):
    rng = np.random.default_rng(0)
    pairs = [blob_pair(rng, 4 + i) for i in range(3)]
    masks = [m for _, m in pairs]
    panels = {"proposed": pairs, "pix2pix": [None, None, None]}
    written = save_figure(contact_sheet(masks, panels, ["stand-in label"]), tmp_path / "sheet")
    assert [p.suffix for p in written] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in written)
    save_figure(fig10({"small": pairs[:1], "large": pairs[2:]}, ["stand-in label"]), tmp_path / "fig10")
    save_figure(fig10({}, missing="proposed: no samples"), tmp_path / "fig10_empty")
    rows = [PerImage(m, 1, i, 0.5 + 0.1 * k + 0.01 * i, 10.0 - k) for i in range(6) for k, m in enumerate(("proposed", "pix2pix", "onestep"))]
    comparisons = {metric: compare_models(rows, ["proposed", "pix2pix", "onestep"], metric) for metric in ("dice", "hd95")}
    save_figure(fig8(comparisons, ["stand-in label"]), tmp_path / "fig8")
    empty = {metric: ModelComparison(metric, {}, (), None, (), 0) for metric in ("dice", "hd95")}
    save_figure(fig8(empty), tmp_path / "fig8_empty")
    assert len(list(tmp_path.glob("*.png"))) == 5


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_make_figures_script_on_a_tiny_set_with_models_missing(tmp_path):
    slices = blob_slices(tmp_path / "slices")
    proposed = blob_samples(tmp_path / "samples" / "proposed", 6, seed=1)
    blob_samples(tmp_path / "samples" / "pix2pix", 6, seed=3, generator="stand-in generator: test", masks_from=proposed)
    result = run_script("make_figures.py", "--slices", slices, "--samples", tmp_path / "samples", "--profile", "smoke",
                        "--figures", tmp_path / "figures", "--options", tmp_path / "options.json")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("fig3", "fig5", "fig7", "fig10", "contact_sheet"):
        for ext in ("png", "pdf"):
            assert (tmp_path / "figures" / f"{name}.{ext}").is_file(), (name, ext)
