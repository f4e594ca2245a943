"""Local worker processes for a sweep: each keeps its data open between trials, takes one
trial at a time, and sends back the outcome. A worker that dies loses only the trial it
held, which runs once more on a fresh worker and is otherwise recorded as failed.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait

from engine.run.sweep_trial import TrialOutcome, TrialTask

ATTEMPTS = 2  # a trial whose worker died runs once more


def died(task: TrialTask, how: str) -> TrialOutcome:
    """The outcome recorded for a trial whose worker died on every attempt."""
    return TrialOutcome(task.phase, task.trial, task.run_id, "failed",
                        error=f"the worker running it died {ATTEMPTS} times ({how})")


def _serve(conn: Connection) -> None:
    """A worker's loop: trials in, outcomes out, until told to stop or the pipe closes."""
    from tqdm import tqdm

    from engine.run.sweep_trial import TrialRunner

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and ends workers
    # workers draw no bars: a thread lock instead of tqdm's semaphore, which a worker ended
    # mid-trial would leave behind (the resource tracker warns of it at the driver's exit)
    tqdm.set_lock(threading.RLock())
    runner = TrialRunner()
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send_bytes(pickle.dumps(runner.run(task), protocol=pickle.HIGHEST_PROTOCOL))


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Start children with SIGINT ignored from birth (Python keeps an inherited SIG_IGN): a
    Ctrl-C in the terminal reaches the whole process group, and a worker still importing
    would die of it; the driver handles Ctrl-C and ends its workers itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Worker:
    def __init__(self, ctx) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="papertape-sweep-worker")
        with _sigint_ignored():
            self.proc.start()
        child.close()
        self.tasks: deque[TrialTask] = deque()  # sent, in the order the worker runs them

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=10)
        self.conn.close()


class LocalPool:
    """``workers`` processes (spawned, so each starts clean) that run trials. Each holds
    ``AHEAD`` trials, so it starts the next while the driver records the last."""

    AHEAD = 2

    def __init__(self, workers: int) -> None:
        self.ctx = mp.get_context("spawn")
        self.workers = [_Worker(self.ctx) for _ in range(workers)]
        self.description = f"{workers} local worker process{'es' if workers != 1 else ''}"

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    def run(self, tasks: list[TrialTask], done: Callable[[TrialOutcome], None],
            stopping: Callable[[], bool]) -> None:
        """Run every task, calling ``done`` with each outcome as it arrives; return early
        (trials in progress dropped) once ``stopping()`` is true."""
        pending = deque(tasks)
        deaths = {task.key: 0 for task in tasks}
        while pending or any(w.tasks for w in self.workers):
            if stopping():
                return
            self._fill(pending)
            busy = [w for w in self.workers if w.tasks]
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=0.5))
            arrived = []
            for index, worker in enumerate(self.workers):
                if not worker.tasks or not ({worker.conn, worker.proc.sentinel} & ready):
                    continue
                try:
                    outcome = pickle.loads(worker.conn.recv_bytes()) if worker.conn.poll() else None
                except (EOFError, OSError):
                    outcome = None
                if outcome is not None:
                    worker.tasks.popleft()
                    arrived.append(outcome)
                    continue
                lost = worker.tasks.popleft()  # the trial it was running; the rest never started
                pending.extendleft(reversed(worker.tasks))
                worker.stop()
                self.workers[index] = _Worker(self.ctx)
                deaths[lost.key] += 1
                if deaths[lost.key] < ATTEMPTS:
                    pending.appendleft(lost)
                else:
                    arrived.append(died(lost, f"exit code {worker.proc.exitcode}"))
            self._fill(pending)  # workers start their next trials before the driver records
            for outcome in arrived:
                done(outcome)

    def _fill(self, pending: deque) -> None:
        for worker in self.workers:
            while pending and len(worker.tasks) < self.AHEAD:
                task = pending.popleft()
                worker.tasks.append(task)
                try:
                    worker.conn.send(task)
                except (BrokenPipeError, OSError):
                    break  # seen as a dead worker on the next wait

    def close(self) -> None:
        """Stop every worker (a trial in progress is dropped)."""
        for worker in self.workers:
            if not worker.tasks and worker.proc.is_alive():
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        for worker in self.workers:
            if not worker.tasks:
                worker.proc.join(timeout=2)
            worker.stop()
