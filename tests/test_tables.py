"""Table rendering (CSV / Markdown / LaTeX) and Table 1 from a prepared dataset."""

from __future__ import annotations

import csv
import io

import pytest

from iusdiff.data.slices import SliceDataset, SliceRecord
from iusdiff.data.splits import CASES, splits_for
from iusdiff.outputs.tables import Table, latex_escape, to_csv, to_latex, to_markdown, write_table
from iusdiff.report.table1 import build_table1


def sample() -> Table:
    return Table(
        name="table3",
        caption="Sizes & shapes",
        groups=[("", 1), ("Tumour size", 2)],
        columns=["", "Real", "Gen."],
        rows=[["Fold 1", "0.12 [0.09]", "0.12 [0.07]"], ["Fold_2", "0.10", "50%"]],
        bold={(0, 1)},
        notes=["ESD in units of 10^4"],
    )


def test_title_csv_markdown_latex():
    table = sample()
    assert table.title == "Table 3"
    rows = list(csv.reader(io.StringIO(to_csv(table))))
    assert rows[0] == ["", "Tumour size Real", "Tumour size Gen."] and rows[2] == ["Fold_2", "0.10", "50%"]
    markdown = to_markdown(table)
    assert "**Table 3.** Sizes & shapes" in markdown and "| Fold 1 | **0.12 [0.09]** | 0.12 [0.07] |" in markdown
    latex = to_latex(table)
    assert "\\multicolumn{2}{c}{Tumour size}" in latex and "\\cmidrule(lr){2-3}" in latex
    assert "\\textbf{0.12 [0.09]}" in latex and "Fold\\_2" in latex and "50\\%" in latex
    assert "Sizes \\& shapes" in latex and "10\\^{}4" in latex


def test_latex_escape_covers_special_characters():
    assert latex_escape("a_b&c%d$e#f{g}h~i^j\\k") == "a\\_b\\&c\\%d\\$e\\#f\\{g\\}h\\textasciitilde{}i\\^{}j\\textbackslash{}k"


def test_ragged_rows_and_bad_groups_are_rejected():
    with pytest.raises(ValueError, match="row 0 has 2 cells"):
        Table("t", "c", ["a", "b", "c"], [["1", "2"]])
    with pytest.raises(ValueError, match="span 2 columns"):
        Table("t", "c", ["a", "b", "c"], [], groups=[("x", 2)])


def test_write_table_writes_three_formats(tmp_path):
    paths = write_table(sample(), tmp_path)
    assert [p.name for p in paths] == ["table3.csv", "table3.md", "table3.tex"]


def test_table1_counts_and_fold3_note():
    records = tuple(
        SliceRecord(subject=s, slice_index=k, position_mm=0.0, tumour_fraction=0.1, image="", mask="", image_sha256="", mask_sha256="")
        for s in CASES
        for k in range(2 if s != 14 else 3)
    )
    dataset = SliceDataset(root=None, records=records, splits=splits_for(CASES))  # type: ignore[arg-type]
    table = build_table1(dataset, "profile 'x'")
    fold3 = table.rows[2]
    assert fold3[0] == "Fold 3" and "14*" in fold3[1].split()
    assert fold3[2] == str(17 * 2 + 3) and fold3[3] == "345"  # ours beside the paper's
    assert table.rows[-1][:4] == ["Test", "24 25 27", "6", "50"]
    assert any("subject 14" in note for note in table.notes)
    assert all("*" not in row[1] for i, row in enumerate(table.rows) if i != 2)
