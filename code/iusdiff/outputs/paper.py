"""The paper's reported numbers, read from the CSV files in the repository's ``paper/`` folder.

Numbers live in one place (``paper/*.csv``, each row with its source in the paper) so tables
and the reproduction report compare against exactly what was printed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from iusdiff.errors import InputError

PAPER_DIR = Path(__file__).resolve().parents[3] / "paper"


def read_csv(name: str) -> list[dict[str, str]]:
    path = PAPER_DIR / name
    if not path.is_file():
        raise InputError(f"{path}: the paper's reported numbers are missing from the repository")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def table1() -> dict[tuple[str, str], tuple[list[int], int]]:
    """(fold, part) -> (subjects as printed, image count); fold is '1'..'5' or 'test'."""
    return {
        (row["fold"], row["part"]): ([int(s) for s in row["subjects_printed"].split()], int(row["images"]))
        for row in read_csv("table1.csv")
    }
