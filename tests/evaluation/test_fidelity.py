"""Table 2 and Fig. 8 logic (iusdiff.evaluation.fidelity) and evaluate_images.py on a tiny hand-made dataset."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from iusdiff.evaluation.fid import InceptionFeatures
from iusdiff.evaluation.fidelity import (
    MedSamSegmenter,
    ModelFold,
    PerImage,
    compare_models,
    pairing_note,
    fidelity,
    image_quality,
    memorisation,
    nearest_distances,
    result_numbers,
    spaced_subset,
    standin_model,
    summarise_fidelity,
    table2,
)
from iusdiff.io import write_json
from iusdiff.outputs.tables import to_markdown

from helpers import SIZE, blob, blob_pair, blob_samples, blob_slices, run_script, tiny_sam

pytestmark = pytest.mark.filterwarnings("ignore:KID.*fewer than subset_size:UserWarning")


# ---------------------------------------------------------------------------------------------
# Table 2


def synthetic_entries() -> list[ModelFold]:
    return [
        ModelFold("proposed", 1, {"FID": 100.0, "KID": 0.06, "DSC": 0.85, "HD": 16.0}),
        ModelFold("proposed", 2, {"FID": 98.0, "KID": 0.05, "DSC": 0.80, "HD": 18.0}),
        ModelFold("onestep", 1, {"FID": 70.0, "KID": 0.04, "DSC": 0.90, "HD": 17.0}),
        ModelFold("onestep", 2, {"FID": 80.0, "KID": 0.03}),
    ]


def test_table2_layout_averages_and_bold_direction():
    table = table2(synthetic_entries(), ["proposed", "onestep", "pix2pix"], [1, 2], {"pix2pix": "no generated set"},
                   {"onestep": "stand-in generator: perturbed real pairs"}, ["Data: phantom."])
    assert table.columns == ["Model", "Metric", "Fold 1", "Fold 2", "Average"]
    rows = {(r[0] or prev, r[1]): r for prev, r in _named(table.rows)}
    assert rows[("proposed", "FID")][2:] == ["100.00", "98.00", "99.00"]
    assert rows[("one-step [stand-in]", "DSC")][2:] == ["0.900", "—", "0.900 (1 of 2 folds)"]
    bold = {(table.rows[r][1], c) for r, c in table.bold}
    fid_rows = [i for i, r in enumerate(table.rows) if r[1] == "FID"]
    # lower FID wins: one-step in both folds and the average
    assert {(r, c) for r, c in table.bold if r in fid_rows} == {(fid_rows[1], 2), (fid_rows[1], 3), (fid_rows[1], 4)}
    dsc_rows = [i for i, r in enumerate(table.rows) if r[1] == "DSC"]
    # higher DSC wins; fold 2 has one value only, so nothing is bold there
    assert (dsc_rows[1], 2) in table.bold and not any(c == 3 for r, c in table.bold if r in dsc_rows)
    assert ("HD95", 2) in bold  # lower HD95 wins: proposed in fold 1
    text = to_markdown(table)
    assert "Pix2Pix [not run]" in text and "no generated set" in text and "stand-in generator" in text
    assert all(cell == "—" for cell in rows[("Pix2Pix [not run]", "KID")][2:])


def _named(rows):
    """(model name of the row's group, row) pairs: only a group's first row names the model."""
    name = ""
    for row in rows:
        name = row[0] or name
        yield name, row


def test_result_numbers_use_the_paper_keys_and_label_partial_averages():
    labels = {(m, k): f"label {m}" for m in ("proposed", "onestep") for k in ("FID", "KID", "DSC", "HD")}
    numbers = {n.key: n for n in result_numbers(synthetic_entries(), ["proposed", "onestep"], [1, 2], labels)}
    assert numbers["proposed · FID · average"].value == pytest.approx(99.0)
    assert numbers["one-step · DSC · fold 1"].label == "label onestep"
    assert "average over fold(s) 1 only" in numbers["one-step · HD · average"].label
    assert "one-step · DSC · fold 2" not in numbers


def test_spaced_subset_spreads_and_keeps_all_when_uncapped():
    assert spaced_subset(10, 4) == [0, 3, 6, 9]
    assert spaced_subset(3, 10) == [0, 1, 2] == spaced_subset(3, None)


# ---------------------------------------------------------------------------------------------
# Scores and statistics


def test_empty_masks_and_predictions_are_counted_not_averaged():
    mask = blob(SIZE, (16, 16), 5)
    empty = np.zeros_like(mask)
    scores = [fidelity(0, mask, mask), fidelity(1, empty, mask), fidelity(2, empty, empty)]
    assert scores[0].dice == 1.0 and scores[1].dice == 0.0 and math.isinf(scores[1].hd95)
    assert math.isnan(scores[2].dice) and scores[2].empty_mask
    summary = summarise_fidelity(scores)
    assert summary["dsc"] == pytest.approx(0.5) and summary["hd"] == 0.0
    assert (summary["n_empty_masks"], summary["n_empty_predictions"], summary["n_hd_inf"]) == (1, 1, 1)


def fig8_rows(onestep_order: list[int]) -> list[PerImage]:
    """Three models on the same 12 masks, and a one-step model whose image k has its own mask
    (its values are listed under the indices ``onestep_order``)."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(12):
        base = rng.uniform(0.5, 0.9)
        rows += [PerImage("proposed", 1, index, base + 0.05, 10.0), PerImage("pix2pix", 1, index, base, 12.0),
                 PerImage("controlnet", 1, index, base - 0.05, math.inf if index == 0 else 14.0)]
    rows += [PerImage("onestep", 1, index, 0.3 + 0.05 * k, 20.0 + k) for k, index in enumerate(onestep_order)]
    rows.append(PerImage("proposed", 1, 99, 0.9, 9.0))  # no partner: left out of the paired tests
    return rows


def test_fig8_pairs_models_on_the_same_masks_and_compares_one_step_unpaired():
    models = ["pix2pix", "proposed", "controlnet", "onestep"]
    dsc = compare_models(fig8_rows(list(range(12))), models, "dice")
    assert dsc.paired == ("pix2pix", "proposed", "controlnet") and dsc.n_incomplete == 1 and len(dsc.values["proposed"]) == 12
    assert dsc.friedman[0] == pytest.approx(24.0) and dsc.friedman[1] < 1e-4  # the three paired models only
    assert [(r.a, r.b, r.test) for r in dsc.pairwise] == [
        ("pix2pix", "proposed", "signed-rank"), ("pix2pix", "controlnet", "signed-rank"), ("proposed", "controlnet", "signed-rank"),
        ("onestep", "pix2pix", "rank-sum"), ("onestep", "proposed", "rank-sum"), ("onestep", "controlnet", "rank-sum")]
    assert [p.stars for p in dsc.pairwise[:3]] == ["***", "***", "***"]
    expected = scipy.stats.ranksums(dsc.values["onestep"], dsc.values["proposed"]).pvalue
    assert dsc.pairwise[4].p == pytest.approx(expected)
    # Which index the one-step model files an image under says nothing about its mask: no test may change.
    shuffled = compare_models(fig8_rows(list(np.random.default_rng(1).permutation(12))), models, "dice")
    assert shuffled.friedman == dsc.friedman and [r.p for r in shuffled.pairwise] == [r.p for r in dsc.pairwise]
    hd = compare_models(fig8_rows(list(range(12))), ["proposed", "controlnet", "onestep"], "hd95")
    assert hd.friedman is None and np.isinf(hd.values["controlnet"][0])  # an empty prediction, ranked worst
    assert hd.pairwise[0].test == "signed-rank" and hd.pairwise[0].p < 0.001
    assert all(r.test == "rank-sum" and r.p < 0.001 for r in hd.pairwise[1:])
    assert "one-step draws its own masks" in pairing_note(models) and "Friedman" in pairing_note(models)


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine two spinning OpenMP threads slow Inception ~50x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fid_and_kid_on_a_few_real_inception_calls(one_thread):
    rng = np.random.default_rng(0)
    images = [blob_pair(rng, 4)[0] for _ in range(8)]
    features = InceptionFeatures(progress=False)(images)
    same = image_quality(features[:4], features[:4])
    other = image_quality(features[:4], features[4:])
    assert same.fid == pytest.approx(0.0, abs=1e-3) and other.fid > same.fid
    assert (other.n_real, other.n_gen) == (4, 4) and math.isfinite(other.kid)


# ---------------------------------------------------------------------------------------------
# Segmenters


def test_medsam_segmenter_adapter_on_a_tiny_random_sam(tmp_path):
    torch.manual_seed(0)
    torch.save(tiny_sam().state_dict(), tmp_path / "sam.pth")
    segmenter = MedSamSegmenter(tmp_path / "sam.pth", builder=tiny_sam)
    image, mask = blob_pair(np.random.default_rng(1), 6)
    prediction = segmenter(image, mask)
    assert prediction.shape == mask.shape and set(np.unique(prediction)) <= {0, 1}


def test_standin_model_is_found_by_fold_and_r0_or_says_why(tmp_path):
    downstream = tmp_path / "downstream"
    assert "has not run" in standin_model(downstream, 1)
    for name in ("fold1_R0", "fold1_R1", "fold2_R1"):
        write_json(downstream / "models" / name / "model.json", {})
    assert standin_model(downstream, 1) == downstream / "models" / "fold1_R0"
    assert "no R = 0 nnU-Net for fold 2" in standin_model(downstream, 2)


# ---------------------------------------------------------------------------------------------
# The script


def tiny_image_vae(root: Path) -> Path:
    """An untrained one-level image autoencoder in train_vae.py's layout (fold1/model)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(in_channels=1, out_channels=1, block_out_channels=(4,), norm_num_groups=4).save_pretrained(root / "fold1" / "model")
    return root


def test_evaluate_images_script_labels_stand_ins_and_missing_parts(tmp_path):
    slices = blob_slices(tmp_path / "slices")
    blob_samples(tmp_path / "samples" / "proposed", 6, seed=1)
    blob_samples(tmp_path / "samples" / "onestep", 6, seed=2, generator="stand-in generator: perturbed real pairs")
    result = run_script(
        "evaluate_images.py", "--slices", slices, "--samples", tmp_path / "samples", "--profile", "smoke",
        "--segmenter", "standin", "--downstream", tmp_path / "downstream", "--folds", "1", "--fid-max-images", "4",
        "--feature-cache", tmp_path / "cache", "--image-vae", tiny_image_vae(tmp_path / "vae"), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = (tmp_path / "tables" / "table2.md").read_text()
    with open(tmp_path / "metrics" / "images" / "reference.csv", newline="") as handle:
        references = {row["reference"]: row for row in csv.DictReader(handle)}
    assert set(references) == {"held_out", "vae_reconstruction"}
    assert references["held_out"]["n_other"] == "6" and references["vae_reconstruction"]["n_other"] == "4"  # val + test; the compared real set
    assert float(references["vae_reconstruction"]["fid"]) > 0 and "Reference FID without a generator" in table
    assert "Pix2Pix [not run]" in table and "ControlNet [not run]" in table and "one-step [stand-in]" in table
    assert "DSC/HD95 missing for fold 1" in table and "at most 4 images per set" in table and "synthetic phantom" in table
    with open(tmp_path / "results" / "table2.csv", newline="") as handle:
        keys = {row["key"]: row for row in csv.DictReader(handle)}
    assert "proposed · FID · fold 1" in keys and "one-step · KID · average" in keys and "proposed · DSC · fold 1" not in keys
    assert "stand-in generator" in keys["one-step · FID · fold 1"]["label"]
    for rel in ("figures/fig8.png", "figures/fig8.pdf", "tables/table2.tex", "metrics/images/summary.csv"):
        assert (tmp_path / rel).is_file(), rel
    options = json.loads((tmp_path / "metrics" / "images" / "options.json").read_text())
    assert set(options["skipped"]) == {"pix2pix", "controlnet"}


def test_evaluate_images_names_a_short_generated_set(tmp_path):
    slices = blob_slices(tmp_path / "slices")
    blob_samples(tmp_path / "samples" / "proposed", 3, seed=1)
    result = run_script("evaluate_images.py", "--slices", slices, "--samples", tmp_path / "samples", "--profile", "smoke",
                        "--folds", "1", cwd=tmp_path)
    assert result.returncode == 2 and "proposed/fold1/manifest.csv: 3 generated pairs, Table 2 needs 6" in result.stderr


def test_vae_reference_encodes_256px_images_in_batches_of_the_limit(tmp_path):
    """Memory bound of the reconstruction reference: no image-VAE call holds more than
    --vae-batch images (SD's VAE at 256 px: ~160 MiB of activations per image in fp32)."""
    from diffusers import AutoencoderKL
    from evaluate_images import reconstructions

    torch.manual_seed(0)  # x8 like SD's VAE, so its mid-block attention sees 32 x 32 latents
    AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  block_out_channels=(4, 4, 4, 4), norm_num_groups=4).save_pretrained(tmp_path / "vae" / "fold1" / "model")
    vae_root = tmp_path / "vae"
    images = list(np.random.default_rng(0).integers(0, 256, (10, 256, 256), dtype=np.uint8))
    batches = {"Encoder": [], "Decoder": []}

    def record(module, inputs, output):
        if type(module).__name__ in batches:
            batches[type(module).__name__].append(inputs[0].shape[0])

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        batched = reconstructions(vae_root, 1, images, "cpu", batch_size=3)
    finally:
        handle.remove()
    assert batches == {"Encoder": [3, 3, 3, 1], "Decoder": [3, 3, 3, 1]}
    one_by_one = reconstructions(vae_root, 1, images, "cpu", batch_size=1)
    assert len(batched) == 10 and batched[0].shape == (256, 256) and batched[0].dtype == np.uint8
    assert max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(batched, one_by_one)) <= 1  # batching changes nothing


def test_memorisation_tells_copies_of_the_training_set_from_new_and_from_blurred_images():
    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(10), 3)
    base = rng.integers(0, 256, (10, 16, 16))
    training = np.clip(base[subjects] + rng.integers(-20, 21, (30, 16, 16)), 0, 255).astype(np.uint8)  # 3 close slices per subject
    held_out = rng.integers(0, 256, (20, 16, 16), dtype=np.uint8)
    copies = np.clip(training[:20].astype(int) + rng.integers(-2, 3, (20, 16, 16)), 0, 255).astype(np.uint8)
    copied = memorisation(copies, held_out, training, subjects)
    assert copied.ratio < 0.2 and copied.copies == 1.0 and copied.copies_held_out == 0.0
    fresh = memorisation(rng.integers(0, 256, (20, 16, 16), dtype=np.uint8), held_out, training, subjects)
    assert 0.9 < fresh.ratio < 1.1 and fresh.copies == 0.0
    blurred = np.full((20, 16, 16), int(training.mean()), dtype=np.uint8)  # close to everything: a low ratio, no copies
    smooth = memorisation(blurred, held_out, training, subjects)
    assert smooth.ratio < 0.8 and smooth.copies == 0.0
    assert np.allclose(nearest_distances(training[:3], training), 0.0)
