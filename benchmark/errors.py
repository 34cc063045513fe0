"""Errors as one readable line: what the command line prints and result files store.

A failure is told in one line, never a traceback: a bad submission must not flood the
output, and the leaderboard shows the line in a table cell. No torch here (the CLI
imports it at start-up).
"""

from __future__ import annotations

LIMIT = 300  # characters; longer messages are cut


def one_line(message: object, limit: int = LIMIT) -> str:
    """``message`` as one line of at most ``limit`` characters (whitespace folded)."""
    return " ".join(str(message).split())[:limit]


def error_line(err: BaseException, limit: int = LIMIT) -> str:
    """An exception as one line: its type and the first line of its message (libraries
    such as transformers put the cause there and follow it with pages of context)."""
    lines = str(err).strip().splitlines()
    return one_line(f"{type(err).__name__}: {lines[0] if lines else ''}", limit)
