"""Faults a server can inject, on command or on a schedule, and the state they leave behind.

Schedule grammar (``--faults``): comma-separated ``NAME@TIME[+ARG]``, where TIME is wall
seconds since the server started (``20`` or ``20s``) and ARG a duration in seconds for
``stall``/``nopong`` or a count for ``rest403``/``cut``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

# name -> (what +ARG means, its default)
KINDS: dict[str, tuple[str | None, float | int | None]] = {
    "drop": (None, None),
    "stall": ("seconds", 5.0),
    "nopong": ("seconds", 30.0),
    "malformed": (None, None),
    "duplicate": (None, None),
    "outoforder": (None, None),
    "rest403": ("count", 1),
    "cut": ("count", 1),
}

SCHEDULE_HELP = """\
fault schedule (--faults): comma-separated NAME@TIME[+ARG], TIME in wall seconds since the
server started (20 or 20s), e.g. "drop@20s,stall@40s+5s,nopong@60s+30s,malformed@70s,
duplicate@75s,outoforder@80s,rest403@90s+3,cut@95s". Faults:
  drop          close every websocket abruptly (transport aborted, no close frame)
  stall+D       keep sockets open and answer pings, but send no data for D s (default 5);
                trades due meanwhile are never sent (REST still has them)
  nopong+D      ignore {"op":"ping"} for D s (default 30)
  malformed     send a text frame that is not JSON to every client
  duplicate     send the last trade message again
  outoforder    send the next two trade messages of a symbol in swapped order
  rest403+N     answer the next N /v5/market calls with HTTP 403 "access too frequent"
  cut+N         cut the next N archive downloads after half their bytes
The same faults fire on demand: POST /_control/fault {"fault": "stall", "seconds": 5}
(or "count": N); GET /_control/state shows what fired."""

_ITEM = re.compile(r"^(?P<name>[a-z0-9]+)@(?P<at>\d+(\.\d+)?)s?(\+(?P<arg>\d+(\.\d+)?)s?)?$")


class FaultError(ValueError):
    """A fault name, time or argument that does not parse."""


@dataclass(frozen=True)
class Fault:
    """One fault: its name, argument (seconds or count) and, when scheduled, its time."""

    name: str
    arg: float | int | None = None
    at_s: float | None = None

    def describe(self) -> str:
        unit, _ = KINDS[self.name]
        if unit is None:
            return self.name
        return f"{self.name} {self.arg:g} s" if unit == "seconds" else f"{self.name} x{self.arg}"


def make_fault(name: str, arg: float | int | None = None, at_s: float | None = None) -> Fault:
    """A checked :class:`Fault`, with the kind's default argument when none is given."""
    if name not in KINDS:
        raise FaultError(f"unknown fault {name!r} (known: {', '.join(KINDS)})")
    unit, default = KINDS[name]
    if unit is None:
        if arg is not None:
            raise FaultError(f"fault {name!r} takes no +ARG")
        return Fault(name, None, at_s)
    value = default if arg is None else arg
    if unit == "count":
        if float(value) != int(value) or int(value) < 1:
            raise FaultError(f"fault {name!r} needs a whole count >= 1, got {value!r}")
        return Fault(name, int(value), at_s)
    if not float(value) > 0:
        raise FaultError(f"fault {name!r} needs a positive duration, got {value!r}")
    return Fault(name, float(value), at_s)


def parse_schedule(text: str) -> list[Fault]:
    """``"drop@20s,stall@40s+5s"`` as faults sorted by time."""
    faults = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _ITEM.match(item)
        if not match:
            raise FaultError(f"fault {item!r} is not NAME@SECONDS[+ARG], e.g. stall@40s+5s")
        arg = match.group("arg")
        faults.append(make_fault(match.group("name"), float(arg) if arg else None,
                                 float(match.group("at"))))
    return sorted(faults, key=lambda f: f.at_s)


@dataclass
class FaultState:
    """Deadlines and counters left by fired faults (times on the monotonic clock)."""

    stalled_until: float = 0.0
    nopong_until: float = 0.0
    rest403_left: int = 0
    cut_left: int = 0
    outoforder_pending: bool = False
    fired: list[dict] = field(default_factory=list)

    def note(self, fault: Fault, source: str, wall_ms: int) -> None:
        """Remember that ``fault`` fired and set the deadline or counter it leaves."""
        now = time.monotonic()
        if fault.name == "stall":
            self.stalled_until = max(self.stalled_until, now + fault.arg)
        elif fault.name == "nopong":
            self.nopong_until = max(self.nopong_until, now + fault.arg)
        elif fault.name == "rest403":
            self.rest403_left += fault.arg
        elif fault.name == "cut":
            self.cut_left += fault.arg
        elif fault.name == "outoforder":
            self.outoforder_pending = True
        self.fired.append({"fault": fault.name, "arg": fault.arg, "at_ms": wall_ms, "source": source})

    def stalled(self) -> bool:
        return time.monotonic() < self.stalled_until

    def ignoring_pings(self) -> bool:
        return time.monotonic() < self.nopong_until

    def take(self, counter: str) -> bool:
        """Use one unit of ``rest403_left`` or ``cut_left``; False when none is left."""
        left = getattr(self, counter)
        if left > 0:
            setattr(self, counter, left - 1)
        return left > 0
