"""Progress bars on stderr for work that takes more than a moment: shown only when stderr
is a terminal, and never when the command was given ``--no-progress`` (which the command
line turns into :data:`enabled` = False before a verb runs)."""

from __future__ import annotations

import sys
from typing import Any

enabled = True


def bar(**options: Any) -> Any:
    """A tqdm bar on stderr that follows the ``--no-progress`` switch and the terminal test
    (tqdm is imported here, so ``papertape --help`` does not pay for it)."""
    from tqdm import tqdm

    return tqdm(disable=None if enabled else True, file=sys.stderr, **options)
