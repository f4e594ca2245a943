"""Checks on a SQLite ledger file before anything is written to it: that it is a SQLite
database of papertape's (or a new file in a folder that can be written), refused in one line
otherwise: nothing of the ledger's is ever written into another program's database."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from engine.core.errors import UserError


class LedgerError(UserError):
    """A ledger that cannot be opened: a folder that cannot be written, or a file that is
    not a SQLite database."""


def check_sqlite_file(path: Path) -> None:
    """Refuse, before anything is written, a ledger file that is not a SQLite database or
    a folder where none can be made (:class:`LedgerError`, one line)."""
    if path.exists():
        if path.is_dir():
            raise LedgerError(f"--ledger {path} is a folder, not a ledger file")
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise LedgerError(f"--ledger {path}: cannot read ({exc.strerror})") from None
        if head and head != b"SQLite format 3\x00":
            raise LedgerError(f"--ledger {path} is not a papertape ledger (not a SQLite database)")
        if not os.access(path, os.W_OK):
            raise LedgerError(f"--ledger {path} cannot be written (permission denied)")
        if head:
            _refuse_foreign(path)
        return
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"--ledger {path}: cannot make its folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LedgerError(f"--ledger {path}: its folder {folder} cannot be written")


def _refuse_foreign(path: Path) -> None:
    """Refuse the SQLite database of another program (tables, none of them ``runs``), read
    only, so nothing of the ledger's is ever written into it."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            con.close()
    except sqlite3.Error:
        return  # opening it properly says what is wrong
    if names and "runs" not in names:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise LedgerError(f"--ledger {path} is not a papertape ledger (a SQLite database with "
                          f"other tables: {shown})")
