"""Sweep trials as Ray tasks on a running cluster (``ray start --head`` on each machine).

Every task runs the same trial code as a local worker (:mod:`engine.run.sweep_trial`);
each Ray worker process keeps the data it opened for later trials. Ray runs a task whose
worker died once more (``max_retries=1``); a second death is recorded as a failed trial.
The cluster must see the data files at the same paths and have papertape installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from engine.core.errors import UserError
from engine.run.sweep_trial import TrialOutcome, TrialTask


class RayError(UserError):
    """The cluster cannot be reached or used."""


def _remote():
    import ray

    from engine.run.sweep_trial import run_in_this_process

    return ray.remote(num_cpus=1, max_retries=1, retry_exceptions=False)(run_in_this_process)


class RayPool:
    """Trials as Ray tasks on the cluster at ``address`` (``auto`` or ``host:port``)."""

    def __init__(self, address: str) -> None:
        import ray

        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            ray.init(address=address, log_to_driver=False, logging_level="warning",
                     configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
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
