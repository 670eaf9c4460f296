"""Paper numbers in the long format, and the report that sets ours beside them."""

from __future__ import annotations

from collections import Counter

from iusdiff.outputs.results import Number, paper_numbers, read_results, table3_keys, write_results
from iusdiff.report.reproduction import comparison_section, render


def test_every_paper_number_is_read_under_a_unique_key():
    numbers = paper_numbers()
    assert Counter(n.item for n in numbers) == {"Table 1": 11, "Table 2": 96, "Table 3": 50, "Table 4": 45, "Fig. 8": 2, "Fig. 9": 9}
    assert len({(n.item, n.key) for n in numbers}) == len(numbers)
    by_key = {n.key: n.value for n in numbers}
    assert by_key["proposed · FID · average"] == 99.30
    assert by_key["fold 1 · ESD/1e4 · real median"] == 5.09
    assert by_key["fold 5 · slope p"] == 0.04
    assert by_key["R0 · HD · mean"] == 33.93


def test_results_round_trip(tmp_path):
    numbers = [Number("Table 3", table3_keys(1, "tumour size")["p"], 0.123456789, "profile 'x'")]
    write_results(tmp_path / "t3.csv", numbers)
    assert read_results(tmp_path) == numbers


def test_comparison_shows_delta_missing_and_unreproduced_items():
    paper = paper_numbers()
    ours = [Number("Table 1", "fold 1 · train images", 300.0, "profile 'x': phantom")]
    text = "\n".join(comparison_section(paper, ours))
    assert "| fold 1 · train images | 353 | 300 | -53 |" in text
    assert "| fold 1 · val images | 35 | missing | |" in text
    assert "Ours: profile 'x': phantom" in text
    assert "Not reproduced in this run (96 numbers)" in text


def test_report_has_every_section():
    records = [{"stage": "slices", "seconds": 1.25}, {"stage": "table1", "seconds": 0.5}]
    text = render("smoke", "profile 'smoke': phantom", paper_numbers(), [], records, 42)
    for heading in ("# Reproduction report: profile 'smoke'", "## Paper vs reproduced", "## Software and device", "## Wall time per stage", "## Checksums"):
        assert heading in text
    assert "| total | 1.8 |" in text and "42 intermediate files" in text
