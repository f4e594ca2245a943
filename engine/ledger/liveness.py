"""Whether a run still lives, read from the ledger: the heartbeat its process renews, and
the resume lease (a run is continued by at most one run)."""

from __future__ import annotations

import os
import socket
import time

import sqlalchemy as sa

from engine.core.errors import UserError
from engine.ledger.schema import Run

HEARTBEAT_S = 2.0  # how often a running run's heartbeat is renewed
STALE_S = 15.0  # a heartbeat older than this: the run's process is gone (generous: a busy host)


class ResumeRefused(UserError):
    """A run that another run already continues (or is continuing right now): resuming it
    again would fork one account into two histories."""


def refuse_continued(conn: sa.Connection, run_id: int) -> None:
    """Raise :class:`ResumeRefused`, naming the run that continues ``run_id``, if one does."""
    row = conn.execute(sa.select(Run.id, Run.status, Run.host, Run.pid, Run.heartbeat_at)
                       .where(Run.resumed_from == run_id).order_by(Run.id).limit(1)).first()
    if row is None:
        return
    status = effective_status(row.status, row.host, row.pid, row.heartbeat_at)
    if status == "running":
        raise ResumeRefused(f"run {run_id} is being resumed by run {row.id} (pid {row.pid} on {row.host}); "
                            "a run is resumed once, by one process")
    raise ResumeRefused(f"run {run_id} was already resumed: run {row.id} continues it ({status}); "
                        f"resume run {row.id} instead (papertape live --resume {row.id})")


def _pid_exists(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_status(status: str, host: str, pid: int, heartbeat_at: float | None,
                     now: float | None = None) -> str:
    """A run's status as it stands: a ``running`` row is ``interrupted`` when its
    heartbeat is older than ``STALE_S`` or its process on this host is gone (a pid that is
    alive may be another process's: only the heartbeat says the run lives). Rows from
    before heartbeats fall back to the pid."""
    if status != "running":
        return status
    if host == socket.gethostname() and pid is not None and not _pid_exists(int(pid)):
        return "interrupted"
    if heartbeat_at is not None and (now if now is not None else time.time()) - float(heartbeat_at) > STALE_S:
        return "interrupted"
    return status
