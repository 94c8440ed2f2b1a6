"""Arrow columns as numpy: values, NaN for missing, pandas-style dtype names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa


def concat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def is_numeric(kind: pa.DataType) -> bool:
    """What pandas calls numeric: integers, floats, booleans; all-missing columns too."""
    import pyarrow as pa

    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )


def dtype_name(kind: pa.DataType, has_missing: bool) -> str:
    """The numpy dtype of the column, pandas-style: integers (booleans) with missing values are
    float64 (pandas: object, which prepare used to reject as non-numeric)."""
    import pyarrow as pa

    integral = pa.types.is_integer(kind) or pa.types.is_boolean(kind)
    if pa.types.is_null(kind) or (integral and has_missing):
        return "float64"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_floating(kind):
        return f"float{kind.bit_width}"
    if pa.types.is_integer(kind):
        return f"{'u' if pa.types.is_unsigned_integer(kind) else ''}int{kind.bit_width}"
    return str(kind)


def float64_values(array: pa.Array) -> np.ndarray:
    """A numeric or boolean Arrow column as float64, NaN where missing (no copy when it can)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if array.type != pa.float64():
        array = pc.cast(array, pa.float64(), safe=False)  # int64 beyond 2**53 rounds
    return arrow_values(array, np.float64, np.nan)


def arrow_values(array: pa.Array, dtype: Any, fill: float) -> np.ndarray:
    """A primitive Arrow array's values as numpy (a view when nothing is null), `fill` for nulls."""
    import pyarrow.compute as pc

    if array.null_count:
        array = pc.fill_null(array, fill)
    return array.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
