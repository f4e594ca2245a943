"""Several processes opening one new ledger at once (backtests started together with ``&``):
each makes the tables it finds missing, so one can lose the race to a table. Three backtests
into a fresh ledger gave two 'cannot open the ledger (table runs already exists)', exit 2."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

from engine.ledger.schema import Base, open_engine


def test_a_table_another_process_made_first_is_no_reason_to_refuse_the_ledger(tmp_path):
    """Made deterministic: just before this process creates ``fills``, another connection
    creates it (as a racing process would between the check and the CREATE TABLE)."""
    path = tmp_path / "new.db"
    table = Base.metadata.tables["fills"]
    ddl = str(sa.schema.CreateTable(table).compile(dialect=sa.create_engine("sqlite://").dialect))

    def the_other_process_first(target, connection, **kw) -> None:
        other = sqlite3.connect(path)
        other.execute(ddl)
        other.commit()
        other.close()

    sa.event.listen(table, "before_create", the_other_process_first)
    try:
        engine = open_engine(path)
    finally:
        sa.event.remove(table, "before_create", the_other_process_first)
    try:
        assert set(Base.metadata.tables) <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
