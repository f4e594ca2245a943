"""The ledger's schema: SQLAlchemy 2 typed models of an append-only record of runs, and
opening a database with it (SQLite in WAL mode by default, any SQLAlchemy URL accepted).

Tables: runs, orders, order_updates, fills, funding, equity (one snapshot per bar, with the
bar; the ``bars`` view shows just the bars; ``equity_curve`` packs their ts, equity and
position per batch for fast reads, ``bar_columns`` the bars), strategy_state, predictions,
feed_gaps and plots (the strategies' named series; ``plot_columns`` packs them)."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.ledger.new_tables import create_tables
from engine.ledger.sqlite_file import LedgerError, check_sqlite_file


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One backtest or live session: what ran, on what, and how it ended."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    strategy: Mapped[str] = mapped_column(String(200))
    params: Mapped[str] = mapped_column(Text)
    symbol: Mapped[str] = mapped_column(String(40))
    category: Mapped[str] = mapped_column(String(16))
    interval: Mapped[str] = mapped_column(String(32))
    data_start: Mapped[int] = mapped_column(BigInteger)
    data_end: Mapped[int] = mapped_column(BigInteger)
    data_files: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    initial_cash: Mapped[float] = mapped_column(Float)
    config: Mapped[str] = mapped_column(Text)
    code_version: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    resumed_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    # wall seconds, renewed every few seconds while the run's process lives: a run still
    # ``running`` whose heartbeat is old was interrupted (a pid says nothing on another host)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)


def _run_fk(index: bool = True) -> Mapped[int]:
    """The run a row belongs to; ``index=False`` where a (run_id, ts) index covers it."""
    return mapped_column(ForeignKey("runs.id"), index=index)


class OrderRow(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    client_order_id: Mapped[str] = mapped_column(String(80))
    strategy_id: Mapped[str] = mapped_column(String(80))
    symbol: Mapped[str] = mapped_column(String(40))
    side: Mapped[int] = mapped_column(Integer)
    # NULL when the request's qty was NaN (SQLite stores NaN as NULL); such orders are
    # rejected, but their request is still recorded.
    qty: Mapped[float | None] = mapped_column(Float, nullable=True)
    order_type: Mapped[str] = mapped_column(String(16))
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    trigger_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    time_in_force: Mapped[str] = mapped_column(String(16))
    reduce_only: Mapped[int] = mapped_column(Integer)
    ts_event: Mapped[int] = mapped_column(BigInteger)
    ts_init: Mapped[int] = mapped_column(BigInteger)


class OrderUpdateRow(Base):
    __tablename__ = "order_updates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    client_order_id: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    ts_event: Mapped[int] = mapped_column(BigInteger)
    ts_init: Mapped[int] = mapped_column(BigInteger)


class FillRow(Base):
    """A fill with the position, realized PnL, cash and equity right after it."""

    __tablename__ = "fills"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk(index=False)  # ix_*_run_ts covers run_id
    client_order_id: Mapped[str] = mapped_column(String(80))
    strategy_id: Mapped[str] = mapped_column(String(80))
    symbol: Mapped[str] = mapped_column(String(40))
    side: Mapped[int] = mapped_column(Integer)
    price: Mapped[float] = mapped_column(Float)
    qty: Mapped[float] = mapped_column(Float)
    fee: Mapped[float] = mapped_column(Float)
    liquidity: Mapped[str] = mapped_column(String(8))
    realized_pnl: Mapped[float] = mapped_column(Float)
    position: Mapped[float] = mapped_column(Float)
    avg_price: Mapped[float] = mapped_column(Float)
    cash: Mapped[float] = mapped_column(Float)
    equity: Mapped[float] = mapped_column(Float)
    ts_event: Mapped[int] = mapped_column(BigInteger)
    ts_init: Mapped[int] = mapped_column(BigInteger)


class FundingRow(Base):
    __tablename__ = "funding"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    symbol: Mapped[str] = mapped_column(String(40))
    rate: Mapped[float] = mapped_column(Float)
    mark_price: Mapped[float] = mapped_column(Float)
    position: Mapped[float] = mapped_column(Float)
    payment: Mapped[float] = mapped_column(Float)
    ts_event: Mapped[int] = mapped_column(BigInteger)


class EquityRow(Base):
    """One row per closed bar: the account at the bar's close (the basis of every return
    metric) and the bar itself. One row instead of two halves the ledger's write cost; the
    ``bars`` view shows the bar columns as a table of their own."""

    __tablename__ = "equity"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk(index=False)  # ix_*_run_ts covers run_id
    ts: Mapped[int] = mapped_column(BigInteger)
    cash: Mapped[float] = mapped_column(Float)
    equity: Mapped[float] = mapped_column(Float)
    position: Mapped[float] = mapped_column(Float)
    mark_price: Mapped[float] = mapped_column(Float)
    margin_used: Mapped[float] = mapped_column(Float)
    symbol: Mapped[str] = mapped_column(String(40))
    interval: Mapped[str] = mapped_column(String(32))
    open_time: Mapped[int] = mapped_column(BigInteger)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    turnover: Mapped[float] = mapped_column(Float)
    trades: Mapped[int] = mapped_column(Integer)


class EquityCurveChunk(Base):
    """The ``ts``, ``equity`` and ``position`` of one batch's equity rows as packed columns
    (engine/curve_columns.py), written by the writer in the same transaction as the rows.
    The rows are the record; this copy lets metrics read a million-bar curve in
    milliseconds instead of making a Python tuple per row."""

    __tablename__ = "equity_curve"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    n: Mapped[int] = mapped_column(Integer)
    ts: Mapped[bytes] = mapped_column(LargeBinary)
    equity: Mapped[bytes] = mapped_column(LargeBinary)
    position: Mapped[bytes] = mapped_column(LargeBinary)
    # equity rows the chunk's n points stand for (NULL in ledgers older than the merging: n)
    bar_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)


class BarColumnsChunk(Base):
    """One batch's bars of one run and symbol as packed columns, written with their equity rows (a
    chart's bars read in milliseconds), its rows with a position open and the last one's mark."""

    __tablename__ = "bar_columns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    symbol: Mapped[str] = mapped_column(String(40))
    n: Mapped[int] = mapped_column(Integer)
    close_ts: Mapped[bytes] = mapped_column(LargeBinary)
    open_time: Mapped[bytes] = mapped_column(LargeBinary)
    open: Mapped[bytes] = mapped_column(LargeBinary)
    high: Mapped[bytes] = mapped_column(LargeBinary)
    low: Mapped[bytes] = mapped_column(LargeBinary)
    close: Mapped[bytes] = mapped_column(LargeBinary)
    volume: Mapped[bytes] = mapped_column(LargeBinary)
    opened: Mapped[int | None] = mapped_column(Integer, nullable=True)  # NULL in older ledgers
    last_mark: Mapped[float | None] = mapped_column(Float, nullable=True)


class PlotColumnsChunk(Base):
    """One batch's points of one run's plotted series, packed beside their plot rows."""

    __tablename__ = "plot_columns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    symbol: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(40))
    n: Mapped[int] = mapped_column(Integer)
    ts: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)


BARS_VIEW = ("CREATE VIEW IF NOT EXISTS bars AS SELECT id, run_id, symbol, interval, open_time, open, "
             "high, low, close, volume, turnover, trades FROM equity")


class StrategyStateRow(Base):
    __tablename__ = "strategy_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    strategy_id: Mapped[str] = mapped_column(String(80))
    ts: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(Text)


class PredictionRow(Base):
    """A model forecast: ``ts_event`` is the close of the bar it is for, ``ts_init`` when it
    was ready to act on, and ``latency_ns`` the difference: the bar's close delay
    (``[bars] close_delay_ms``, on bars made from trades) and, live, the wait for a free
    model and the forward pass; in a backtest, the inference latency charged, if any.
    ``symbol`` is the symbol whose bar it is for (NULL in ledgers older than portfolios)."""

    __tablename__ = "predictions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    strategy_id: Mapped[str] = mapped_column(String(80))
    ts_event: Mapped[int] = mapped_column(BigInteger)
    ts_init: Mapped[int] = mapped_column(BigInteger)
    latency_ns: Mapped[int] = mapped_column(BigInteger)
    dropped: Mapped[int] = mapped_column(Integer)
    values: Mapped[str] = mapped_column(Text)
    symbol: Mapped[str | None] = mapped_column(String(30), nullable=True)


class FeedGapRow(Base):
    __tablename__ = "feed_gaps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    symbol: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    gap_from: Mapped[int] = mapped_column(BigInteger)
    gap_to: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text)
    ts: Mapped[int] = mapped_column(BigInteger)


class PlotRow(Base):
    """A point of a strategy's named series (``Strategy.plot``): for ``symbol``, stamped with
    the clock when it was made (the bar close being handled). A table of its own, so a ledger
    from before plots gains it on opening and its runs simply have none."""

    __tablename__ = "plots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()  # read through plot_columns: no wider index to keep up
    symbol: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(40))
    ts: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)


class SweepRow(Base):
    """One parameter sweep: what it searches and how (``spec``, JSON, enough to resume it),
    and, once done, its summary (best trial, DSR, PBO). A table of its own, so a ledger
    from before sweeps opens unchanged."""

    __tablename__ = "sweeps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))
    strategy: Mapped[str] = mapped_column(String(200))
    objective: Mapped[str] = mapped_column(String(80))
    sampler: Mapped[str] = mapped_column(String(16))
    spec: Mapped[str] = mapped_column(Text)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)


class SweepTrialRow(Base):
    """A trial of a sweep: its number in the sweep (unique with its phase), the run that
    holds its rows (none when it failed before a run began), its parameters, status and
    objective. ``phase`` is ``search``, ``holdout``, ``fold K`` or ``fold K test``."""

    __tablename__ = "sweep_trials"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id"), index=True)
    phase: Mapped[str] = mapped_column(String(32))
    trial: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    params: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    objective: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[float] = mapped_column(Float)


Index("ux_sweep_trials_trial", SweepTrialRow.sweep_id, SweepTrialRow.phase, SweepTrialRow.trial, unique=True)


# covers the metrics' read of a run's equity curve: an index-only scan, no row lookups
Index("ix_equity_run_ts", EquityRow.run_id, EquityRow.ts, EquityRow.equity, EquityRow.position)
Index("ix_fills_run_ts", FillRow.run_id, FillRow.ts_event)

TABLES = {cls.__tablename__: cls.__table__ for cls in
          (OrderRow, OrderUpdateRow, FillRow, FundingRow, EquityRow,
           StrategyStateRow, PredictionRow, FeedGapRow, PlotRow)}
# The columns each buffered row fills, in order (everything but the autoincrement id).
COLUMNS = {name: [c.name for c in table.columns if c.name != "id"] for name, table in TABLES.items()}
WIDTHS = {name: len(columns) for name, columns in COLUMNS.items()}
CURVE_COLUMNS = [c.name for c in EquityCurveChunk.__table__.columns if c.name != "id"]
BAR_CHUNK_COLUMNS = [c.name for c in BarColumnsChunk.__table__.columns if c.name != "id"]
PLOT_CHUNK_COLUMNS = [c.name for c in PlotColumnsChunk.__table__.columns if c.name != "id"]
PACKED = (EquityCurveChunk.__table__, BarColumnsChunk.__table__, PlotColumnsChunk.__table__)


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for ``target``: URLs pass through, paths become SQLite files."""
    text = str(target)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser()}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA page_size=16384")  # a new file only: ~20% faster bulk inserts
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _no_autocheckpoint(dbapi_conn, _record) -> None:
    """The writer leaves checkpoints to its checkpoint thread instead of doing them inline."""
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def open_engine(target: str | Path) -> sa.Engine:
    """An engine on the ledger with the schema created; SQLite gets WAL and NORMAL sync.
    A ledger that cannot be opened is a :class:`LedgerError`."""
    url = database_url(target)
    if url.startswith("sqlite:///"):
        check_sqlite_file(Path(url.removeprefix("sqlite:///")))
    try:
        engine = sa.create_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        create_tables(Base.metadata, engine)  # another process may be making them too
        view = BARS_VIEW
        if engine.dialect.name == "postgresql":  # no IF NOT EXISTS for views there
            view = view.replace("CREATE VIEW IF NOT EXISTS", "CREATE OR REPLACE VIEW")
        with engine.begin() as conn:
            conn.execute(sa.text(view))
        _upgrade(engine)
    except (sa.exc.OperationalError, sa.exc.DatabaseError, sa.exc.ArgumentError, ImportError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise LedgerError(f"--ledger {target}: cannot open the ledger ({reason})") from None
    return engine


# A run is continued by at most one run: the continuation's row is the resume lease, and two
# resumers of one run cannot both insert theirs (NULLs, runs that resume nothing, are not
# compared). Made here rather than by create_all, so a ledger that already holds a fork opens.
RESUME_LEASE = "CREATE UNIQUE INDEX IF NOT EXISTS ux_runs_resumed_from ON runs (resumed_from)"


def _upgrade(engine: sa.Engine) -> None:
    """Bring a ledger made by an older papertape up to this schema: the nullable columns added
    to ``runs``, ``predictions`` and the packed tables since, and the resume lease's index."""
    inspector = sa.inspect(engine)
    for table in (Run.__table__, PredictionRow.__table__, *PACKED):
        have = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in have and c.nullable]
        with engine.begin() as conn:
            for column in missing:
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(RESUME_LEASE))
    except sa.exc.IntegrityError:
        logging.getLogger(__name__).warning(
            "this ledger holds a run resumed twice (made before resumes took a lease); "
            "resumes are checked without the index")


def code_version() -> str:
    """The package version plus the git commit when run from a checkout."""
    from engine import __version__

    head = Path(__file__).resolve().parents[2] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (head.parent / ref.removeprefix("ref: ")).read_text().strip()
        return f"{__version__}+{ref[:12]}"
    except OSError:
        return __version__


