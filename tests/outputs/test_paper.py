"""The paper's numbers as the README quotes them, checked against ``paper/*.csv`` (read through
``iusdiff.outputs.paper``): the README's reproduction table must not misquote the paper."""

from __future__ import annotations

import re

import pytest

from iusdiff.outputs.paper import read_csv

from helpers import REPO


NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w)")  # not the digits of β1, R2, χ²


def readme_paper_cells() -> dict[str, str]:
    """The 'paper' column of the README's reproduction table, by the item's first two words."""
    lines = (REPO / "README.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| paper item |"))
    assert lines[header].split("|")[4].strip() == "paper"
    cells = {}
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        columns = [c.strip() for c in line.split("|")[1:-1]]
        cells[" ".join(columns[0].split()[:2])] = columns[3]
    return cells


def numbers(text: str) -> list[float]:
    return [float(n) for n in NUMBER.findall(text)]


def values(name: str, *columns: str, **where: str) -> list[float]:
    """The numbers of ``columns`` in paper/<name> (rows matching ``where``), '<0.0001' as 0.0001."""
    rows = [r for r in read_csv(name) if all(r[k] == v for k, v in where.items())]
    return [float(r[c].lstrip("<")) for r in rows for c in columns if r[c]]


PAPER_VALUES = {
    "Table 1": lambda: values("table1.csv", "images"),
    "Table 2": lambda: values("table2.csv", "value", fold="average"),
    "Table 3": lambda: values("table3.csv", "p_value"),
    "Table 4": lambda: values("table4.csv", "beta1", "slope_p_value"),
    "Fig. 8": lambda: values("tests_reported.csv", "statistic", "p_value", figure="fig8"),
    "Fig. 9": lambda: values("fig9.csv", "mean") + values("tests_reported.csv", "statistic", figure="fig9"),
}


@pytest.mark.parametrize("item", PAPER_VALUES)
def test_every_number_the_readme_quotes_for_the_paper_is_in_paper_csv(item):
    quoted = numbers(readme_paper_cells()[item])
    assert quoted, f"README quotes no paper number for {item}"
    assert set(quoted) <= set(PAPER_VALUES[item]()), f"{item}: {sorted(set(quoted) - set(PAPER_VALUES[item]()))} not in paper/"


def test_readme_quotes_each_number_in_its_place():
    cells = readme_paper_cells()
    assert numbers(cells["Table 1"]) == values("table1.csv", "images")  # train/val per fold, then test
    for model in ("Pix2Pix", "proposed", "ControlNet", "one-step"):
        quoted = re.search(rf"{model} ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+)", cells["Table 2"]).groups()
        paper = [values("table2.csv", "value", model=model, metric=m, fold="average")[0] for m in ("FID", "KID", "DSC", "HD")]
        assert [float(v) for v in quoted] == paper, model
    size_p = re.search(r"size p ([\d., ]+)", cells["Table 3"]).group(1)
    assert numbers(size_p) == values("table3.csv", "p_value", quantity="size")  # folds 1-5
    for mask_set in ("real", "generated"):  # "real β1 a–b, generated c–d"
        low, high = map(float, re.search(rf"{mask_set}(?: β1)? ([\d.]+)–([\d.]+)", cells["Table 4"]).groups())
        beta1 = values("table4.csv", "beta1", set=mask_set)
        assert (low, high) == (min(beta1), max(beta1)), mask_set
    low, high = map(float, re.search(r"slope p ([\d.]+)–([\d.]+)", cells["Table 4"]).groups())
    assert (low, high) == (min(values("table4.csv", "slope_p_value")), max(values("table4.csv", "slope_p_value")))
