"""A ledger's tables made when several processes open one new ledger at once (a shell loop
of backtests started with ``&``): each creates the tables it finds missing, so two can race
to one table, and the loser's 'already exists' is no reason to refuse the ledger."""

from __future__ import annotations

import sqlalchemy as sa


def create_tables(metadata: sa.MetaData, engine: sa.Engine, attempts: int = 20) -> None:
    """``metadata.create_all`` on ``engine``, tried again while another process wins the
    creation of a table or index (each retry finds more of them made); other errors raise."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except sa.exc.DatabaseError as exc:
            text = str(getattr(exc, "orig", None) or exc)
            if attempt + 1 == attempts or not ("already exists" in text or "duplicate key" in text):
                raise
