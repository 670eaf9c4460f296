"""Real vs generated tumour masks per fold: Table 3 (size, ESD) and Table 4 (size–shape fit).

Real masks are the fold's training masks. The generated set is the first N non-empty generated
masks, N the real count: empty masks are removed first, then the set is truncated, in the
authors' order (:func:`nonempty_prefix`). A mask without an ESD (only single-pixel contours) is
left out of both the size and the ESD statistics, as the authors' code does, and a mask with
ESD 0 (an axis-aligned rectangle) of the log-log fit; the tables' notes count all three.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from iusdiff.evaluation.metrics import esd, tumour_size
from iusdiff.evaluation.stats import LogLogFit, loglog_fit, ranksums_test, slope_ttest_from_fits
from iusdiff.outputs.results import Number, table3_keys, table4_keys
from iusdiff.outputs.tables import Table



def esd_exponent(size_px: int) -> int:
    """Power of ten Table 3 divides ESD by: 4 at the paper's 256 px (its "10^5" label is off by
    ten, SPEC §5); ESD scales with the square of the resolution, so smaller images use less."""
    return int(round(4 - 2 * np.log10(256 / size_px)))


def nonempty_prefix(masks: Iterable[tuple[str, np.ndarray]], count: int) -> tuple[list[str], list[np.ndarray], int]:
    """The first ``count`` non-empty (name, mask) pairs, in order, and how many empty ones came
    before them; fewer than ``count`` non-empty ones gives fewer (the caller says what is missing).
    ``masks`` is consumed lazily: only as many are read as needed."""
    names: list[str] = []
    kept: list[np.ndarray] = []
    empty = 0
    for name, mask in masks:
        if not mask.any():
            empty += 1
            continue
        names.append(name)
        kept.append(mask)
        if len(kept) == count:
            break
    return names, kept, empty


@dataclass(frozen=True)
class ShapeSet:
    """Sizes and ESDs of the masks that have an ESD, plus how many had none."""

    names: tuple[str, ...]
    sizes: np.ndarray
    esds: np.ndarray
    excluded: tuple[str, ...]

    @property
    def fit_mask(self) -> np.ndarray:
        """Masks that can enter the log-log fit (ESD 0, e.g. a square, cannot)."""
        return (self.sizes > 0) & (self.esds > 0)

    @property
    def n_out_of_fit(self) -> int:
        return int((~self.fit_mask).sum())


def shape_set(masks: Sequence[np.ndarray], names: Sequence[str]) -> ShapeSet:
    kept, sizes, values, excluded = [], [], [], []
    for name, mask in zip(names, masks, strict=True):
        try:
            value = esd(mask)
        except ValueError:
            excluded.append(name)
            continue
        kept.append(name)
        sizes.append(tumour_size(mask))
        values.append(value)
    return ShapeSet(tuple(kept), np.asarray(sizes), np.asarray(values), tuple(excluded))


@dataclass(frozen=True)
class FoldComparison:
    fold: int
    real: ShapeSet
    gen: ShapeSet
    size_p: float
    esd_p: float
    fit_real: LogLogFit
    fit_gen: LogLogFit
    slope_t: float
    slope_p: float
    n_empty_removed: int  # empty generated masks removed before the first N were taken


def compare_fold(fold: int, real: ShapeSet, gen: ShapeSet, n_empty_removed: int = 0) -> FoldComparison:
    """Rank-sum tests of size and ESD, and the slope test of the log-log fits."""
    for label, group in (("real", real), ("generated", gen)):
        if group.fit_mask.sum() < 3:
            raise ValueError(f"fold {fold}: fewer than 3 {label} masks with a usable size and ESD")
    fit_real = loglog_fit(real.sizes[real.fit_mask], real.esds[real.fit_mask])
    fit_gen = loglog_fit(gen.sizes[gen.fit_mask], gen.esds[gen.fit_mask])
    slope_t, slope_p = slope_ttest_from_fits(fit_real, fit_gen)
    return FoldComparison(
        fold=fold,
        real=real,
        gen=gen,
        size_p=ranksums_test(real.sizes, gen.sizes)[1],
        esd_p=ranksums_test(real.esds, gen.esds)[1],
        fit_real=fit_real,
        fit_gen=fit_gen,
        slope_t=slope_t,
        slope_p=slope_p,
        n_empty_removed=n_empty_removed,
    )


def median_iqr(values: np.ndarray, scale: float = 1.0) -> str:
    q1, median, q3 = np.percentile(values / scale, [25, 50, 75])
    return f"{median:.2f} [{q3 - q1:.2f}]"


def _counts_note(results: Sequence[FoldComparison]) -> str:
    """Per fold: masks compared, and every mask left out of something, by reason."""
    parts = []
    for r in results:
        dropped = len(r.real.excluded) + len(r.gen.excluded)
        details = [f"{r.n_empty_removed} empty generated masks removed first"] if r.n_empty_removed else []
        details += [f"{dropped} without ESD left out"] if dropped else []
        if r.real.n_out_of_fit or r.gen.n_out_of_fit:
            details.append(f"ESD 0 (left out of the log-log fit): {r.real.n_out_of_fit} real / {r.gen.n_out_of_fit} generated")
        parts.append(f"fold {r.fold}: {len(r.real.names)} real / {len(r.gen.names)} generated" + (f" ({'; '.join(details)})" if details else ""))
    return "Masks per fold: " + "; ".join(parts) + "."


def table3(results: Sequence[FoldComparison], provenance: str, generator: str, size_px: int) -> Table:
    exponent = esd_exponent(size_px)
    rows = [
        [
            f"Fold {r.fold}",
            median_iqr(r.real.sizes),
            median_iqr(r.gen.sizes),
            f"{r.size_p:.2f}",
            median_iqr(r.real.esds, 10.0**exponent),
            median_iqr(r.gen.esds, 10.0**exponent),
            f"{r.esd_p:.2f}",
        ]
        for r in results
    ]
    return Table(
        name="table3",
        caption="Tumour size and ESD of real (training) and generated masks per fold: median [IQR], Wilcoxon rank-sum p-value.",
        groups=[("", 1), ("Tumour size", 3), (f"ESD [·10^{exponent} px²]", 3)],
        columns=["", "Real", "Gen.", "p-value", "Real", "Gen.", "p-value"],
        rows=rows,
        notes=[
            f"Data: {provenance}. Generated masks: {generator}.",
            f"Masks at {size_px} px; ESD is the authors' computation (2·Σ(d − d̄)² over 100 contour points), in px² at that "
            "resolution (it grows with the square of the resolution; the paper's masks are 256 px).",
            _counts_note(results),
        ],
    )


def _coef(value: float, ci: tuple[float, float]) -> str:
    return f"{value:.2f} [{ci[1] - ci[0]:.2f}]"


def table4(results: Sequence[FoldComparison], provenance: str, generator: str) -> Table:
    rows = [
        [
            f"Fold {r.fold}",
            _coef(r.fit_real.beta1, r.fit_real.ci_beta1),
            _coef(r.fit_real.beta0, r.fit_real.ci_beta0),
            _coef(r.fit_gen.beta1, r.fit_gen.ci_beta1),
            _coef(r.fit_gen.beta0, r.fit_gen.ci_beta0),
            f"{r.slope_p:.2f}",
        ]
        for r in results
    ]
    return Table(
        name="table4",
        caption="Size–shape relation log(ESD) = β0 + β1·log(size) per fold: coefficient [full width of its 95% CI]; "
        "p-value of the t-test for equal slopes.",
        groups=[("", 1), ("Real mask", 2), ("Generated mask", 2), ("", 1)],
        columns=["", "β1", "β0", "β1", "β0", "p-value"],
        rows=rows,
        notes=[
            f"Data: {provenance}. Generated masks: {generator}.",
            "t = (β1,gen − β1,real)/√(se_real² + se_gen²), df = n_real + n_gen − 4, two-sided; natural logarithms.",
            _counts_note(results),
        ],
    )


def representative_mask(masks: Sequence[np.ndarray], shapes: ShapeSet, names: Sequence[str]) -> np.ndarray:
    """The mask whose ESD is closest to the set's median (Fig. 4's example)."""
    target = shapes.names[int(np.argmin(np.abs(shapes.esds - np.median(shapes.esds))))]
    return masks[list(names).index(target)]


def per_mask_rows(result: FoldComparison) -> list[dict[str, object]]:
    """One row per mask (both sets) for the per-fold metric CSV; excluded masks have no ESD."""
    rows: list[dict[str, object]] = []
    for label, shapes in (("real", result.real), ("generated", result.gen)):
        fit = shapes.fit_mask
        for i, name in enumerate(shapes.names):
            rows.append({"set": label, "mask": name, "size": f"{shapes.sizes[i]:.6f}", "esd": f"{shapes.esds[i]:.4f}", "in_fit": int(fit[i])})
        rows.extend({"set": label, "mask": name, "size": "", "esd": "", "in_fit": 0} for name in shapes.excluded)
    return rows


def result_numbers(results: Sequence[FoldComparison], label: str) -> list[Number]:
    """Tables 3 and 4 under the report's keys; ESD divided by 10^4 as the paper prints it."""
    numbers = []
    for r in results:
        for quantity, real, gen, p, scale in (
            ("tumour size", r.real.sizes, r.gen.sizes, r.size_p, 1.0),
            ("ESD/1e4", r.real.esds, r.gen.esds, r.esd_p, 1e4),
        ):
            keys = table3_keys(r.fold, quantity)
            for prefix, values in (("real", real / scale), ("gen", gen / scale)):
                q1, median, q3 = np.percentile(values, [25, 50, 75])
                numbers += [Number("Table 3", keys[f"{prefix} median"], median, label), Number("Table 3", keys[f"{prefix} IQR"], q3 - q1, label)]
            numbers.append(Number("Table 3", keys["p"], p, label))
        keys = table4_keys(r.fold)
        for prefix, fit in (("real", r.fit_real), ("gen", r.fit_gen)):
            numbers += [
                Number("Table 4", keys[f"{prefix} β1"], fit.beta1, label),
                Number("Table 4", keys[f"{prefix} β1 CI width"], fit.ci_beta1[1] - fit.ci_beta1[0], label),
                Number("Table 4", keys[f"{prefix} β0"], fit.beta0, label),
                Number("Table 4", keys[f"{prefix} β0 CI width"], fit.ci_beta0[1] - fit.ci_beta0[0], label),
            ]
        numbers.append(Number("Table 4", keys["slope p"], r.slope_p, label))
    return numbers
