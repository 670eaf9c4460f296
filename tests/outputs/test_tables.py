"""Table rendering: CSV, Markdown and LaTeX."""

from __future__ import annotations

import csv
import io

import pytest

from iusdiff.outputs.tables import Table, latex_escape, to_csv, to_latex, to_markdown, write_table


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
