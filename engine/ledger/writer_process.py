"""The ledger's writer process: ``python -m engine.ledger.writer_process URL`` reads batches from
stdin and writes each in one transaction, so SQLite's per-row work runs beside the event
loop instead of competing with it for Python's GIL.

Messages are length-prefixed frames: a pickled ``{table: [rows]}`` batch, or ``sync`` /
``stop``, each answered with the first write error (empty when none). After a failed batch
later ones are not written: a ledger must not skip a batch and go on. When the parent dies,
stdin closes and everything it handed over is already written.
"""

from __future__ import annotations

import logging
import pickle
import sys

from engine.ledger.batch_writer import BatchWriter
from engine.ledger.store import STOP, SYNC, read_frame, write_frame

log = logging.getLogger("engine.ledger.writer_process")


def main(url: str) -> int:
    writer = BatchWriter(url)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    error = ""
    try:
        while True:
            try:
                message = read_frame(stdin)
            except EOFError:
                return 0
            if message in (SYNC, STOP):
                write_frame(stdout, error.encode())
                if message == STOP:
                    return 0
                continue
            if error:
                continue
            try:
                writer.write(pickle.loads(message))
            except Exception as exc:
                error = repr(exc)
                log.error("ledger write failed: %s", error)
    finally:
        writer.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
