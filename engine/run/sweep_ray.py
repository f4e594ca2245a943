"""Sweep trials as Ray tasks on a running cluster (``ray start --head`` on each machine).

Every task runs the same trial code as a local worker (:mod:`engine.run.sweep_trial`);
each Ray worker process keeps the data it opened for later trials. Ray runs a task whose
worker died once more (``max_retries=1``); a second death is recorded as a failed trial.
The cluster must see the data files at the same paths and have papertape installed.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engine.core.errors import UserError
from engine.run.sweep_trial import TrialOutcome, TrialTask


class RayError(UserError):
    """The cluster cannot be reached or used."""


def _remote():
    import ray

    from engine.run.sweep_trial import run_in_this_process

    return ray.remote(num_cpus=1, max_retries=1, retry_exceptions=False)(run_in_this_process)


def check_answers(address: str, timeout: float = 5.0) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) where nothing accepts a connection:
    ``ray.init`` would retry it for minutes, printing its own log lines."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return  # auto finds the local cluster itself; Ray refuses a malformed address at once
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, OverflowError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or "timed out"
        raise RayError(f"--ray {address}: nothing answers there ({reason}); start a cluster with "
                       "`ray start --head`, or give auto") from None


@contextmanager
def _stderr_held() -> Iterator[list[bool]]:
    """Hold what is written to file descriptor 2 while the block runs (Ray's C++ client logs
    each retry there) and write it out afterwards, unless the block put True in the list."""
    sys.stderr.flush()
    saved = os.dup(2)
    drop: list[bool] = []
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield drop
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not drop:
                held.seek(0)
                os.write(2, held.read())


class RayPool:
    """Trials as Ray tasks on the cluster at ``address`` (``auto`` or ``host:port``)."""

    def __init__(self, address: str) -> None:
        import ray

        check_answers(address)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        with _stderr_held() as drop:
            try:
                ray.init(address=address, log_to_driver=False, logging_level="warning",
                         configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                drop.append(True)  # Ray's retry lines: the one line below says what went wrong
                raise RayError(f"--ray {address}: cannot connect to a Ray cluster ({exc})") from None
        cpus = int(ray.cluster_resources().get("CPU", 0))
        self.description = f"Ray cluster at {address} ({cpus} CPU{'s' if cpus != 1 else ''})"
        self.task = _remote()
        self.refs: dict = {}

    def run(self, tasks: list[TrialTask], done: Callable[[TrialOutcome], None],
            stopping: Callable[[], bool]) -> None:
        """Submit every task and call ``done`` with each outcome as it completes; return
        early once ``stopping()`` is true (``close`` cancels the rest)."""
        import ray
        from ray.exceptions import RayError as RayTaskError

        self.refs = {self.task.remote(task): task for task in tasks}
        while self.refs and not stopping():
            ready, _ = ray.wait(list(self.refs), num_returns=1, timeout=0.5)
            for ref in ready:
                task = self.refs.pop(ref)
                try:
                    done(ray.get(ref))
                except RayTaskError as exc:  # the worker died on both attempts, or the task raised
                    done(TrialOutcome(task.phase, task.trial, task.run_id, "failed",
                                      error=f"Ray task failed: {type(exc).__name__}: "
                                            f"{str(exc).splitlines()[0] if str(exc) else ''}"))

    def close(self) -> None:
        """Cancel what is still running and disconnect (the cluster keeps running)."""
        import ray

        for ref in list(self.refs):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - a task that already finished cannot be cancelled
                pass
        self.refs = {}
        ray.shutdown()
