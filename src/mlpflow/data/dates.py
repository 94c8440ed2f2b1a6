"""Dates and times as features: a cell read as a moment, and the parts a network can use.

A date column becomes its parts (fastai's `add_datepart`): year, day of month, day of year and
the days elapsed since 1970-01-01 as numbers; month, weekday and hour (when a cell has a time of
day) as categories, because their effects are cyclic, not monotonic (December sits next to
January; benchmarks/date_parts.py measures it). A cell is a date when stored as a
date or timestamp, or written in ISO 8601 (`2023-01-07`, `2023-01-07 13:45:00`,
`2023-01-07T13:45Z`); the day-first and month-first forms (`03/04/2023`) are never read as
dates, since a cell cannot tell which of them a file means. Prepare and the served model derive
parts with this one module, from the same reading of a cell (`mlpflow.data.text.temporal_text`).
Only numpy and the standard library are imported here: the served model uses this module.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

from mlpflow.data.text import temporal_text

# The parts of a date column, in feature order; `hour` only when a cell has a time of day.
PARTS = ("year", "month", "day", "weekday", "dayofyear", "hour", "elapsed")
# The parts embedded as categories, and their levels by value (weekday: Monday 0, as pandas).
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HOURS = tuple(f"{hour:02d}h" for hour in range(24))
PART_LEVELS = {"month": MONTHS, "weekday": WEEKDAYS, "hour": HOURS}
FIRST_VALUE = {"month": 1, "weekday": 0, "hour": 0}  # the value of each one's first level

DAY_SECONDS = 86400
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2}(?:\.\d+)?)?")
# Day, month and year in some order, as `03/04/2023` or `3.4.23`: no order can be assumed.
_DAY_MONTH = re.compile(r"\d{1,2}([/.-])\d{1,2}\1\d{2}(?:\d{2})?(?:[ T]\d{1,2}:\d{2}.*)?")
_EPOCH = dt.datetime(1970, 1, 1)


def date_seconds(text: str | None) -> float:
    """Seconds since 1970-01-01 UTC of an ISO date/time (a time zone converted to UTC, none
    taken as UTC); NaN for anything else (missing, a time of day alone, 2023-02-30)."""
    if text is None:
        return math.nan
    canonical = temporal_text(text)
    if not _CANONICAL.fullmatch(canonical):
        return math.nan
    try:
        moment = dt.datetime.fromisoformat(canonical)
    except ValueError:
        return math.nan
    return (moment - _EPOCH).total_seconds()


def parse_dates(texts: Iterable[str | None]) -> np.ndarray:
    return np.fromiter((date_seconds(text) for text in texts), dtype=np.float64)


def date_parts(timed: bool) -> list[str]:
    """The parts a date column becomes: `hour` when a cell has a time of day (`timed`)."""
    return [part for part in PARTS if part != "hour" or timed]


def is_categorical_part(part: str) -> bool:
    return part in PART_LEVELS


def part_name(column: str, part: str) -> str:
    """The feature a part of `column` becomes: `<column>_<part>`."""
    return f"{column}_{part}"


def part_values(seconds: np.ndarray, part: str) -> np.ndarray:
    """One part of each moment (seconds since 1970-01-01 UTC) as float64, NaN where missing:
    year, month 1-12, day 1-31, weekday 0-6 (Monday 0), day of year 1-366, hour 0-23, or the
    days elapsed since 1970-01-01 (fractional)."""
    missing = np.isnan(seconds)
    if part == "elapsed":
        return seconds / DAY_SECONDS
    whole = np.where(missing, 0, np.floor(seconds)).astype(np.int64)
    moments = whole.astype("datetime64[s]")
    days = moments.astype("datetime64[D]")
    if part == "year":
        values = moments.astype("datetime64[Y]").astype(np.int64) + 1970
    elif part == "month":
        values = moments.astype("datetime64[M]").astype(np.int64) % 12 + 1
    elif part == "day":
        values = (days - moments.astype("datetime64[M]")).astype(np.int64) + 1
    elif part == "weekday":
        values = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    elif part == "dayofyear":
        values = (days - moments.astype("datetime64[Y]")).astype(np.int64) + 1
    elif part == "hour":
        values = whole // 3600 % 24
    else:
        raise ValueError(f"unknown date part {part!r}; one of {', '.join(PARTS)}")
    return np.where(missing, np.nan, values.astype(np.float64))


def part_codes(seconds: np.ndarray, part: str) -> np.ndarray:
    """A categorical part of each moment as the index of its level in `PART_LEVELS[part]`;
    -1 where missing."""
    values = part_values(seconds, part)
    return np.where(np.isnan(values), -1, values - FIRST_VALUE[part]).astype(np.int64)


def part_levels(seconds: np.ndarray, part: str) -> list[str | None]:
    """A categorical part of each moment as its level (`Jan`, `Mon`, `13h`); None where missing."""
    levels = PART_LEVELS[part]
    return [levels[code] if code >= 0 else None for code in part_codes(seconds, part)]


def day_month_order_unknown(levels: Sequence[str], share: float) -> bool:
    """Whether at least `share` of `levels` are dates in a day/month order no cell tells
    (`03/04/2023`): such a column is left as text, and the reason said."""
    if not levels:
        return False
    matched = sum(1 for level in levels if _DAY_MONTH.fullmatch(level.strip()))
    return matched >= share * len(levels)
