"""Text cells read as numbers or booleans, the same way in prepare and in serving.

A column exported by a spreadsheet or a database often holds numbers as text ("1,234", " 7 ")
with a few stray markers ("n/a", "?", "-"): those cells are missing, the rest are numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

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


def parse_number(text: str | None) -> float:
    """A cell as a number: thousands separators and surrounding spaces allowed; NaN otherwise."""
    if text is None:
        return math.nan
    cleaned = text.strip().replace(",", "").replace("_", "")
    try:
        value = float(cleaned)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def parse_numbers(texts: Iterable[str | None]) -> np.ndarray:
    return np.fromiter((parse_number(text) for text in texts), dtype=np.float64)


def is_boolean_text(levels: Iterable[str]) -> bool:
    """Whether the distinct values are one of the boolean word pairs (or a part of one)."""
    words = {level.strip().lower() for level in levels}
    return bool(words) and any(words <= pair for pair in BOOLEAN_PAIRS)


def boolean_value(text: str | None) -> float:
    """1.0, 0.0, or NaN (missing or not a boolean word)."""
    if text is None:
        return math.nan
    return BOOLEAN_WORDS.get(text.strip().lower(), math.nan)


def level_text(value: object) -> str | None:
    """A cell as a categorical level: the text prepare read (numbers as Arrow writes them:
    integers without a decimal point); None when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)
