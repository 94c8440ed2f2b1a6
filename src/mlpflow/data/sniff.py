"""How a CSV file writes its table, read from its first `SNIFF_BYTES` (`SNIFF_ROWS` lines at most):
the delimiter, the decimal mark and the thousands separator (`TextFormat`). `data.csv.*` set any
of them instead.

The delimiter is the candidate that splits the header into more than one field and every sampled
line into as many. The number format comes from the cells of the columns that hold numbers (but
for a few stray cells): `0,86`, `-1,74`, `1,5`, `1.234,5` or `1234,567` can only have a decimal
comma, `1,234.5` or `1,234,567` only a thousands comma, and so on. A cell like `1,234` (one to
three digits, the mark, three digits) is ambiguous: another cell of the file decides, and when
none does, the file is refused with the column and the option to set. Two columns that write
decimals differently are refused too: reading either one wrongly would rescale it, silently.
Only the standard library and `mlpflow.data.text` are imported here (`mlpflow predict` reads
its input file with it too).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mlpflow.data.text import NA_VALUES, SPACES, TextFormat
from mlpflow.errors import DataError

SNIFF_BYTES = 1 << 20
SNIFF_ROWS = 5000  # of those bytes, at most this many lines are read
DELIMITERS = (",", ";", "\t", "|")
NUMBER_SHARE = 0.9  # a column tells the number format when this share of its cells are numbers
# Option words (data.csv.*) for each mark; the marks themselves are accepted too.
MARK_WORDS = {
    "comma": ",",
    "semicolon": ";",
    "tab": "\t",
    "pipe": "|",
    "point": ".",
    "dot": ".",
    "space": " ",
    "apostrophe": "'",
    "none": "",
}
_WORD = {mark: word for word, mark in MARK_WORDS.items() if word != "dot"}
_NUMBERISH = re.compile(rf"[+-]?[\d.,'{SPACES}]*\d[\d.,'{SPACES}]*(?:[eE][+-]?\d+)?")
_EXPONENT = re.compile(r"[eE][+-]?\d+$")


def word(mark: str) -> str:
    """A mark as the option word that sets it: ',' -> comma."""
    return _WORD.get(mark, repr(mark))


@dataclass
class Evidence:
    """What the sampled cells say, each with the first (column, cell) that says it."""

    decimal: dict[str, tuple[str, str]] = field(default_factory=dict)
    thousands: dict[str, tuple[str, str]] = field(default_factory=dict)
    ambiguous: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, column: str, cells: Sequence[str]) -> None:
        """The cells of one column; a column that is mostly text tells nothing."""
        present = [cell.strip() for cell in cells if cell.strip() not in NA_VALUES]
        shaped = [cell for cell in present if _NUMBERISH.fullmatch(cell)]
        if not shaped or len(shaped) < NUMBER_SHARE * len(present):
            return
        for cell in dict.fromkeys(shaped):
            for kind, mark in _cell_evidence(cell):
                getattr(self, kind).setdefault(mark, (column, cell))


_DIGITS = str.maketrans("", "", "0123456789")


@lru_cache(maxsize=64)
def _grouped(group: str, point: str = "") -> re.Pattern[str]:
    """1-3 digits (no leading 0), then groups of three after any of `group`'s characters, then
    (with `point`) the decimal mark and digits."""
    tail = rf"{re.escape(point)}\d+" if point else ""
    return re.compile(rf"[1-9]\d{{0,2}}(?:[{re.escape(group)}]\d{{3}})+{tail}")


def _cell_evidence(cell: str) -> list[tuple[str, str]]:
    """(kind, mark) pairs a number-shaped cell shows: kind decimal, thousands or ambiguous."""
    exponent = _EXPONENT.search(cell) if "e" in cell or "E" in cell else None
    body = (cell[: exponent.start()] if exponent else cell).lstrip("+-")
    marks = body.translate(_DIGITS)
    if not marks:
        return []
    if len(marks) == 1 and marks in ".,":  # the common case: 0,86  1.5  1,234
        lead, tail = body.split(marks)
        if not tail:
            return []  # "12.": says nothing
        if exponent or not lead or len(tail) != 3 or len(lead) > 3 or lead.startswith("0"):
            return [("decimal", marks)]  # 0,86  1,5  ,5  1234,567  1,5e3
        return [("ambiguous", marks)]  # 1,234: 1234 or 1.234
    spaces = "".join(sorted({mark for mark in marks if mark in SPACES + "'"}))
    points = [mark for mark in marks if mark in ".,"]
    if spaces:  # 1 234,5  1'234.50: the space or apostrophe groups thousands
        if ("'" in spaces and spaces != "'") or len(points) > 1:
            return []
        if not _grouped(spaces, points[0] if points else "").fullmatch(body):
            return []
        group = "'" if spaces == "'" else " "
        return [("thousands", group), *(("decimal", mark) for mark in points)]
    if set(marks) == {".", ","}:  # 1,234.5 or 1.234,5: the last mark is the decimal one
        last = marks[-1]
        other = "," if last == "." else "."
        if marks.count(last) != 1 or not _grouped(other, last).fullmatch(body):
            return []
        return [("decimal", last), ("thousands", other)]
    if set(marks) <= {".", ","} and _grouped(marks[0]).fullmatch(body):
        return [("thousands", marks[0])]  # 1,234,567: only thousands repeat
    return []


def read_sample(path: Path) -> tuple[str, bool]:
    """The file's first SNIFF_BYTES as text (a BOM dropped), and whether that is all of it."""
    with path.open("rb") as stream:
        data = stream.read(SNIFF_BYTES + 1)
    whole = len(data) <= SNIFF_BYTES
    text = data[:SNIFF_BYTES].decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff"), whole


def _records(sample: str, delimiter: str, whole: bool) -> list[list[str]]:
    """The sample's first SNIFF_ROWS records (blank lines skipped), each complete: the last one
    is dropped when the sample may have cut it."""
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    rows = list(itertools.islice((row for row in reader if row), SNIFF_ROWS + 1))
    if (len(rows) > SNIFF_ROWS or not whole) and len(rows) > 1:
        rows.pop()
    return rows


def sniff_delimiter(sample: str, whole: bool, shown: str, options: bool = True) -> str:
    """The delimiter that splits the header into >1 fields and every line into as many; ','
    when none splits the header; a DataError when two split every line alike."""
    splits: dict[str, list[list[str]]] = {}
    for candidate in DELIMITERS:
        if candidate in sample:
            try:
                splits[candidate] = _records(sample, candidate, whole)
            except csv.Error:
                continue
    widths = {c: len(rows[0]) for c, rows in splits.items() if rows and len(rows[0]) > 1}
    even = [c for c in widths if all(len(row) == widths[c] for row in splits[c])]
    if len(even) > 1:
        choices = " or ".join(word(c) for c in even)
        raise DataError(
            f"cannot tell the delimiter of {shown}: {' and '.join(map(repr, even))} both split "
            f"every line into equally many fields; "
            + (f"set data.csv.delimiter={choices}" if options else "use one of them only")
        )
    if even:
        return even[0]
    return max(widths, key=widths.__getitem__) if widths else ","  # a ragged file: Arrow says


def columns_of(sample: str, delimiter: str, whole: bool) -> Iterator[tuple[str, list[str]]]:
    """(header name, sampled cells) per column of a CSV sample."""
    rows = _records(sample, delimiter, whole)
    if not rows:
        return
    header, body = rows[0], rows[1:]
    for j, name in enumerate(header):
        yield name, [row[j] for row in body if j < len(row)]


def decide_format(
    evidence: Evidence,
    shown: str,
    delimiter: str,
    decimal: str | None = None,
    thousands: str | None = None,
    fallback: TextFormat | None = None,
    options: bool = True,
) -> TextFormat:
    """The decimal mark and thousands separator: as given, else as the cells show them, else
    `fallback`'s (a model's training table) or the defaults ('.', ','). Ambiguous or
    contradicting cells raise a one-line DataError naming a column (and, with `options`, the
    data.csv option that settles it)."""
    if decimal is None and thousands in (".", ","):
        decimal = "," if thousands == "." else "."
    if decimal is None:
        shown_by = dict(evidence.decimal)
        for mark, where in evidence.thousands.items():  # a thousands ',' means a decimal '.'
            if mark in ".,":
                shown_by.setdefault("," if mark == "." else ".", where)
        if len(shown_by) > 1:
            (a, (col_a, cell_a)), (b, (col_b, cell_b)) = sorted(shown_by.items())
            raise DataError(
                f"{shown} writes numbers two ways: column {col_a!r} has {cell_a!r} (decimal "
                f"{a!r}), column {col_b!r} has {cell_b!r} (decimal {b!r}); "
                + (
                    f"set data.csv.decimal={word(a)} or {word(b)} (cells written the other way "
                    "are then missing)"
                    if options
                    else "write every column one way"
                )
            )
        if shown_by:
            decimal = next(iter(shown_by))
        elif fallback is not None:
            decimal = fallback.decimal
        elif evidence.ambiguous:
            mark, (column, cell) = sorted(evidence.ambiguous.items())[0]
            other = "." if mark == "," else ","
            as_thousands = cell.replace(mark, "")
            as_decimal = cell.replace(mark, ".")
            raise DataError(
                f"cannot tell how {shown} writes numbers: column {column!r} has cells like "
                f"{cell!r} ({as_thousands} if {mark!r} separates thousands, {as_decimal} if it "
                f"is the decimal mark) and no other cell tells; set data.csv.decimal="
                f"{word(other)} if {mark!r} separates thousands, data.csv.decimal={word(mark)} if "
                "it is the decimal mark"
            )
        else:
            decimal = "."
    if thousands is None:
        marks = sorted(mark for mark in evidence.thousands if mark != decimal)
        if len(marks) > 1:
            (col_a, cell_a), (col_b, cell_b) = (evidence.thousands[m] for m in marks[:2])
            raise DataError(
                f"{shown} groups thousands two ways: column {col_a!r} has {cell_a!r}, column "
                f"{col_b!r} has {cell_b!r}; "
                + (
                    f"set data.csv.thousands={' or '.join(word(m) for m in marks)}"
                    if options
                    else "write every column one way"
                )
            )
        if marks:
            thousands = marks[0]
        elif fallback is not None and fallback.thousands != decimal:
            thousands = fallback.thousands
        else:
            thousands = "," if decimal == "." else "."
    return TextFormat(delimiter, decimal, thousands)


def sniff_file(
    path: Path,
    shown: str,
    delimiter: str | None = None,
    decimal: str | None = None,
    thousands: str | None = None,
    fallback: TextFormat | None = None,
) -> TextFormat:
    """The file's TextFormat: what is given, the rest read from its first SNIFF_BYTES (a model's
    input file: `fallback`, its training table's format, where the cells do not tell)."""
    sample, whole = read_sample(path)
    if delimiter is None:
        delimiter = sniff_delimiter(sample, whole, shown, options=fallback is None)
    evidence = Evidence()
    if decimal is None or thousands is None:
        try:
            for name, cells in columns_of(sample, delimiter, whole):
                evidence.add(name, cells)
        except csv.Error:  # e.g. a field beyond csv's limit: Arrow reads it, the cells tell nothing
            evidence = Evidence()
    return decide_format(
        evidence, shown, delimiter, decimal, thousands, fallback, options=fallback is None
    )
