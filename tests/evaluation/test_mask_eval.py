"""Tables 3–4 on real vs perturbed vs shrunken masks, and the evaluate_masks.py script."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy import ndimage

from iusdiff.baselines.perturb import perturb_pair
from iusdiff.evaluation.mask_eval import compare_fold, esd_exponent, nonempty_prefix, shape_set, table3, table4
from iusdiff.io import load_mask_png, save_png

from helpers import run_script


def star_masks(n: int, seed: int, size: int = 64) -> list[np.ndarray]:
    """Lobulated blobs of varied size, like tumour slices."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((size, size)) - size / 2
    theta, radius = np.arctan2(rows, cols), np.hypot(rows, cols)
    masks = []
    for _ in range(n):
        r0 = rng.uniform(5, 18)
        boundary = r0 * (1 + sum(rng.uniform(0, 0.2) * np.cos(k * theta + rng.uniform(0, 6)) for k in (2, 3, 4)))
        masks.append((radius < boundary).astype(np.uint8))
    return masks


@pytest.fixture(scope="module")
def real():
    masks = star_masks(80, seed=0)
    return masks, shape_set(masks, [f"r{i}" for i in range(len(masks))])


def test_perturbed_copies_match_and_eroded_ones_do_not(real):
    masks, real_set = real
    rng = np.random.default_rng(1)
    image = np.zeros((64, 64), np.uint8)
    perturbed = [perturb_pair(image, m, rng)[1] for m in masks]
    shrunk = [ndimage.binary_erosion(m, iterations=3).astype(np.uint8) for m in masks]
    same = compare_fold(1, real_set, shape_set(perturbed, [f"p{i}" for i in range(80)]))
    assert same.size_p > 0.05 and same.esd_p > 0.05 and same.slope_p > 0.05
    smaller = compare_fold(1, real_set, shape_set(shrunk, [f"s{i}" for i in range(80)]))
    assert smaller.size_p < 0.05


def test_empty_masks_are_left_out_and_counted(real):
    masks, real_set = real
    with_empty = masks[:40] + [np.zeros((64, 64), np.uint8)] * 3
    gen = shape_set(with_empty, [f"g{i}" for i in range(43)])
    assert len(gen.names) == 40 and len(gen.excluded) == 3
    result = compare_fold(2, real_set, gen)
    assert "3 without ESD left out" in table3([result], "p", "g", 64).notes[-1]


def test_generated_set_is_the_first_n_nonempty_masks_read_lazily():
    blob, empty = star_masks(1, seed=3)[0], np.zeros((64, 64), np.uint8)
    order = [("e0", empty), ("m1", blob), ("e2", empty), ("m3", blob), ("m4", blob), ("e5", empty)]

    def masks():  # reading past what is needed would be wasted work (3N masks per fold)
        yield from order[:5]
        raise AssertionError("read beyond the N-th non-empty mask")

    names, kept, n_empty = nonempty_prefix(masks(), 3)
    assert names == ["m1", "m3", "m4"] and len(kept) == 3 and n_empty == 2  # empty ones first, then the first N
    assert nonempty_prefix(iter(order), 4) == (["m1", "m3", "m4"], [blob] * 3, 3)  # too few: the caller names the shortfall


def test_masks_left_out_of_the_loglog_fit_are_counted(real):
    masks, real_set = real
    square = np.zeros((64, 64), np.uint8)
    square[10:30, 20:40] = 1  # four contour corners at one distance from the centroid: ESD 0
    gen = shape_set(masks[:40] + [square, square], [f"g{i}" for i in range(42)])
    result = compare_fold(1, real_set, gen, n_empty_removed=5)
    assert gen.n_out_of_fit == 2 and result.fit_gen.n == 40
    for table in (table3([result], "p", "g", 64), table4([result], "p", "g")):
        note = table.notes[-1]
        assert "5 empty generated masks removed first" in note and "ESD 0 (left out of the log-log fit): 0 real / 2 generated" in note


def test_tables_follow_the_paper_layout(real):
    masks, real_set = real
    result = compare_fold(1, real_set, real_set)
    t3, t4 = table3([result], "profile 'x'", "gen", 256), table4([result], "profile 'x'", "gen")
    assert t3.columns == ["", "Real", "Gen.", "p-value", "Real", "Gen.", "p-value"]
    assert t3.groups[2][0] == "ESD [·10^4 px²]" and t3.rows[0][3] == "1.00"
    assert t4.columns == ["", "β1", "β0", "β1", "β0", "p-value"] and t4.rows[0][1] == t4.rows[0][3]
    assert t4.rows[0][5] == "1.00"


@pytest.mark.parametrize("size, exponent", [(256, 4), (128, 3), (64, 3), (32, 2)])
def test_esd_exponent_follows_resolution(size, exponent):
    assert esd_exponent(size) == exponent


def test_perturb_pair_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 25:45] = 1
    image = (mask * 200 + 20).astype(np.uint8)
    warped_image, warped_mask = perturb_pair(image, mask, rng)
    inside, outside = warped_image[warped_mask > 0].mean(), warped_image[warped_mask == 0].mean()
    assert inside > 150 and outside < 70
    assert 0.5 < warped_mask.sum() / mask.sum() < 1.5


def test_evaluate_masks_script_on_stand_in(tmp_path, smoke_data):
    smoke = tmp_path / "smoke"
    shutil.copytree(smoke_data / "slices", smoke / "slices")
    standin = tmp_path / "standin"
    made = run_script("make_standin_samples.py", "--slices", smoke / "slices", "--out", standin, "--folds", "1,2", "--copies", "2")
    assert made.returncode == 0, made.stderr
    blanked = [f"masks/{i:05d}.png" for i in (0, 2)]
    for rel in blanked:  # empty generated masks come first in fold 2: removed before the first N are taken
        save_png(standin / "fold2" / rel, np.zeros_like(load_mask_png(standin / "fold2" / rel)))
    result = run_script(
        "evaluate_masks.py", "--slices", "slices", "--generated", standin, "--profile", "smoke", "--folds", "1,2", cwd=smoke
    )
    assert result.returncode == 0, result.stderr
    for rel in ("tables/table3.md", "tables/table4.tex", "figures/fig4.pdf", "figures/fig6.png", "metrics/masks/fold2.csv"):
        assert (smoke / rel).is_file(), rel
    assert "stand-in generator" in (smoke / "tables" / "table3.md").read_text()
    assert "2 empty generated masks removed first" in (smoke / "tables" / "table4.md").read_text()
    rows = (smoke / "metrics" / "masks" / "fold2.csv").read_text().splitlines()
    generated = [row.split(",")[1] for row in rows if row.startswith("generated,")]
    n_real = sum(row.startswith("real,") for row in rows)
    assert len(generated) == n_real and not set(blanked) & set(generated) and "masks/00003.png" in generated

    short = run_script(
        "evaluate_masks.py", "--slices", "slices", "--generated", standin, "--profile", "smoke", "--folds", "3", cwd=smoke
    )
    assert short.returncode == 2 and "fold 3: generated samples not found" in short.stderr
