"""Text cells read as numbers, booleans, dates and levels, the same way in prepare and in serving.

A column exported by a spreadsheet or a database often holds numbers as text ("1,234", " 7 ",
"1.234,5") with a few stray markers ("n/a", "?", "-"): those cells are missing, the rest are
numbers, read with the file's `TextFormat` (its decimal mark and thousands separator, read from
the file by `mlpflow.data.sniff` and kept in meta.json). A cell that does not fit the format (a
group of two digits after a thousands separator, a second decimal mark) is no number: it is never
rescaled into one. Dates and times are levels by what they mean: `temporal_text` writes one
canonical text for `2023-01-07`, `2023-01-07 00:00:00` and a Parquet timestamp alike.
Only numpy and the standard library are imported here: the served model uses this module.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# pandas' default `na_values` (pandas._libs.parsers.STR_NA_VALUES): read as missing in CSV files.
NA_VALUES = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)
# Arrow's date/time types, unit dropped: their cells are levels by `temporal_text`.
TEMPORAL_TYPES = ("timestamp", "date32", "date64", "time32", "time64")
# Spaces a thousands separator " " stands for (a plain, a no-break and a narrow no-break space).
SPACES = " \u00a0\u202f"

# Two-valued text columns read as booleans (compared lowercased, stripped).
BOOLEAN_WORDS = {
    "true": 1.0,
    "false": 0.0,
    "yes": 1.0,
    "no": 0.0,
    "y": 1.0,
    "n": 0.0,
    "t": 1.0,
    "f": 0.0,
}
BOOLEAN_PAIRS = ({"true", "false"}, {"yes", "no"}, {"y", "n"}, {"t", "f"})


@dataclass(frozen=True)
class TextFormat:
    """How a file writes its table: the CSV delimiter, the decimal mark ("." or ","), and the
    thousands separator ("," "." " " "'", or "" for none)."""

    delimiter: str = ","
    decimal: str = "."
    thousands: str = ","

    def describe(self) -> str:
        thousands = repr(self.thousands) if self.thousands else "none"
        return f"delimiter {self.delimiter!r}, decimal {self.decimal!r}, thousands {thousands}"


DEFAULT_FORMAT = TextFormat()


@lru_cache(maxsize=16)
def _number_pattern(decimal: str, thousands: str) -> re.Pattern[str]:
    """Digits with the decimal mark; or grouped by threes with the thousands separator."""
    point = re.escape(decimal)
    plain = rf"(?:\d+(?:{point}\d*)?|{point}\d+)(?:[eE][+-]?\d+)?"
    if not thousands:
        return re.compile(rf"[+-]?{plain}")
    group = f"[{SPACES}]" if thousands == " " else re.escape(thousands)
    return re.compile(rf"[+-]?(?:{plain}|\d{{1,3}}(?:{group}\d{{3}})+(?:{point}\d*)?)")


def parse_number(text: str | None, fmt: TextFormat = DEFAULT_FORMAT) -> float:
    """A cell as a number, read with the file's decimal mark and thousands separator; surrounding
    spaces allowed; NaN when missing, not a number in that format, or not finite."""
    if text is None:
        return math.nan
    cleaned = text.strip(SPACES + "\t")
    if fmt.decimal == ".":
        try:  # the common case: what Python reads (digits, a ".", an exponent, "_" groups)
            value = float(cleaned)
        except ValueError:
            pass
        else:
            return value if math.isfinite(value) else math.nan
    if not _number_pattern(fmt.decimal, fmt.thousands).fullmatch(cleaned):
        return math.nan
    for mark in SPACES if fmt.thousands == " " else fmt.thousands:
        cleaned = cleaned.replace(mark, "")
    value = float(cleaned.replace(fmt.decimal, "."))
    return value if math.isfinite(value) else math.nan


def parse_numbers(texts: Iterable[str | None], fmt: TextFormat = DEFAULT_FORMAT) -> np.ndarray:
    return np.fromiter((parse_number(text, fmt) for text in texts), dtype=np.float64)


def is_boolean_text(levels: Iterable[str]) -> bool:
    """Whether the distinct values are one of the boolean word pairs (or a part of one)."""
    words = {level.strip().lower() for level in levels}
    return bool(words) and any(words <= pair for pair in BOOLEAN_PAIRS)


def boolean_value(text: str | None) -> float:
    """1.0, 0.0, or NaN (missing or not a boolean word)."""
    if text is None:
        return math.nan
    return BOOLEAN_WORDS.get(text.strip().lower(), math.nan)


def is_number_type(dtype: str) -> bool:
    """Whether a column's dtype as read (meta.json's) is an Arrow integer or float type."""
    return dtype.startswith(("int", "uint", "float", "double", "halffloat"))


def is_temporal(dtype: str) -> bool:
    """Whether a column's dtype as read (meta.json's) is an Arrow date/time type."""
    return dtype.split("[")[0] in TEMPORAL_TYPES


_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?"
)
_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?")


def temporal_text(text: str) -> str:
    """A date/time as one canonical text, whatever way it was printed: `YYYY-MM-DD` at midnight,
    `YYYY-MM-DD HH:MM:SS[.fraction]` otherwise (a time zone: converted to UTC); a time of day as
    `HH:MM:SS[.fraction]`. Text that is no ISO date/time is returned as it is."""
    cleaned = text.strip()
    match = _DATETIME.fullmatch(cleaned)
    if match is None:
        time = _TIME.fullmatch(cleaned)
        if time is None:
            return text
        hour, minute, second, fraction = time.groups()
        return _clock(hour, minute, second or "00", fraction)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone is not None and zone.strip("Z+-:0"):  # an offset other than UTC
        try:
            offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:].strip(":") or 0))
            tzinfo = dt.timezone(-offset if zone[0] == "-" else offset)
            clock = (int(part or 0) for part in (hour, minute, second))
            local = dt.datetime(int(year), int(month), int(day), *clock, tzinfo=tzinfo)
        except ValueError:  # not a real date (2023-02-30): keep the text
            return cleaned
        utc = local.astimezone(dt.timezone.utc)
        year, month, day = f"{utc.year:04d}", f"{utc.month:02d}", f"{utc.day:02d}"
        hour, minute, second = f"{utc.hour:02d}", f"{utc.minute:02d}", f"{utc.second:02d}"
    date = f"{year}-{month}-{day}"
    clock = _clock(hour or "00", minute or "00", second or "00", fraction)
    return date if clock == "00:00:00" else f"{date} {clock}"


def _clock(hour: str, minute: str, second: str, fraction: str | None) -> str:
    fraction = (fraction or "").rstrip("0")
    return f"{hour}:{minute}:{second}" + (f".{fraction}" if fraction else "")


def is_missing(value: object) -> bool:
    """None, NaN, NaT, pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, NaT
    except (TypeError, ValueError):  # pandas.NA: its comparisons are NA
        return True


def level_text(value: object) -> str | None:
    """A cell as a categorical level: the text prepare read (numbers as Arrow writes them:
    integers without a decimal point; dates and times by `temporal_text`); None when missing."""
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, dt.datetime | dt.date | dt.time):  # pandas' Timestamp too
        return temporal_text(value.isoformat())
    if isinstance(value, np.datetime64):
        return temporal_text(str(value))
    return str(value)
