"""A process's own peak resident set, for the benchmarks that run cases in child processes."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set in MB (VmHWM: unlike ``ru_maxrss``, which Linux keeps
    across fork and exec, it is not the parent's peak when the parent was bigger)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
