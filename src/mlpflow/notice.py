"""One-line notices on stderr, with no dependencies: the served model's modules use them too,
where mlpflow.console (rich, omegaconf) is not installed."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    """One line on stderr, for what the user must know but that does not stop the stage."""
    print(f"warning: {message}", file=sys.stderr)
