"""Plain-text tables the commands print: evaluation reports, curves, account lists."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(rows: Sequence[Sequence[str]], *, left: bool = False) -> None:
    """Columns two spaces apart; the first row is the header. Right-aligned (numbers), or
    with ``left`` left-aligned (names, dates) without trailing spaces."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        if left:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        else:
            print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
