"""Numbers in one long format, so every reproduced number can sit beside the paper's.

Each evaluation stage writes ``OUT/results/<item>.csv`` with rows ``item, key, value, label``
(``label`` = provenance and any stand-in). The paper's numbers (``paper/*.csv``) are read into the
same keys here, and :mod:`iusdiff.report.reproduction` joins the two.

Keys read like the paper's tables, e.g. ``fold 1 · tumour size · real median`` or
``proposed · FID · average``.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

from iusdiff.io import atomic_path
from iusdiff.outputs import paper

FIELDS = ("item", "key", "value", "label")


@dataclass(frozen=True)
class Number:
    item: str
    key: str
    value: float
    label: str = ""


def write_results(path: str | Path, numbers: list[Number]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for number in numbers:
            row = asdict(number)
            row["value"] = repr(float(number.value))
            writer.writerow(row)


def read_results(folder: str | Path) -> list[Number]:
    numbers = []
    for path in sorted(Path(folder).glob("*.csv")):
        with open(path, newline="") as handle:
            numbers.extend(Number(r["item"], r["key"], float(r["value"]), r["label"]) for r in csv.DictReader(handle))
    return numbers


def table1_key(fold: str, part: str) -> str:
    return "test · images" if part == "test" else f"fold {fold} · {part} images"


def table3_keys(fold: int, quantity: str) -> dict[str, str]:
    """Keys of one Table 3 cell group; quantity is 'tumour size' or 'ESD/1e4'."""
    base = f"fold {fold} · {quantity}"
    return {name: f"{base} · {name}" for name in ("real median", "real IQR", "gen median", "gen IQR", "p")}


def table4_keys(fold: int) -> dict[str, str]:
    base = f"fold {fold}"
    names = ("real β1", "real β1 CI width", "real β0", "real β0 CI width", "gen β1", "gen β1 CI width", "gen β0", "gen β0 CI width", "slope p")
    return {name: f"{base} · {name}" for name in names}


def paper_numbers() -> list[Number]:
    """Every number of paper/*.csv under the keys our stages write."""
    numbers = [Number("Table 1", table1_key(r["fold"], r["part"]), float(r["images"]), r["source"]) for r in paper.read_csv("table1.csv")]
    for row in paper.read_csv("table2.csv"):
        numbers.append(Number("Table 2", f"{row['model']} · {row['metric']} · {'average' if row['fold'] == 'average' else 'fold ' + row['fold']}", float(row["value"]), row["source"]))
    for row in paper.read_csv("table3.csv"):
        quantity = "tumour size" if row["quantity"] == "size" else "ESD/1e4"
        keys = table3_keys(int(row["fold"]), quantity)
        for name, column in (("real median", "real_median"), ("real IQR", "real_iqr"), ("gen median", "gen_median"), ("gen IQR", "gen_iqr"), ("p", "p_value")):
            numbers.append(Number("Table 3", keys[name], float(row[column]), row["source"]))
    for row in paper.read_csv("table4.csv"):
        keys = table4_keys(int(row["fold"]))
        prefix = "real" if row["set"] == "real" else "gen"
        for name, column in (("β1", "beta1"), ("β1 CI width", "beta1_ci_width"), ("β0", "beta0"), ("β0 CI width", "beta0_ci_width")):
            numbers.append(Number("Table 4", keys[f"{prefix} {name}"], float(row[column]), row["source"]))
        if row["set"] == "real":
            numbers.append(Number("Table 4", keys["slope p"], float(row["slope_p_value"]), row["source"]))
    for row in paper.read_csv("fig9.csv"):
        numbers.append(Number("Fig. 9", f"R{row['R']} · {row['metric']} · mean", float(row["mean"]), row["source"]))
    for row in paper.read_csv("tests_reported.csv"):  # the test statistics the paper prints (p-values only as bounds)
        if row["statistic"] and row["test"].startswith("Friedman"):
            item = "Fig. 8" if row["figure"] == "fig8" else "Fig. 9"
            numbers.append(Number(item, f"Friedman · {row['metric']} · chi2", float(row["statistic"]), row["source"]))
    return numbers
