"""Faults a server can inject, on command or on a schedule, and the state they leave behind.

Schedule grammar (``--faults``): comma-separated ``NAME[:SYMBOL]@TIME[+ARG]``, where TIME is
wall seconds since the server started (``20`` or ``20s``) and ARG a duration in seconds for
``stall``/``nopong`` or a count for ``rest403``/``cut``. A fault aimed at ``SYMBOL`` hits only
that symbol's topics, the connections subscribed to them, its REST calls and its archive
downloads, in every category that serves it (spot's BTCUSDT and linear's alike); without one
it hits everything the server serves.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.core.symbols import check_symbol
from engine.core.typed import ConfigError

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
fault schedule (--faults): comma-separated NAME[:SYMBOL]@TIME[+ARG], TIME in wall seconds since
the server started (20 or 20s), e.g. "drop@20s,stall@40s+5s,nopong@60s+30s,malformed@70s,
duplicate@75s,outoforder@80s,rest403@90s+3,cut@95s". NAME:SYMBOL aims a fault at one symbol
(stall:ETHUSDT@40s+5s stalls ETHUSDT's topics while the others stream on; drop:ETHUSDT closes
the connections subscribed to ETHUSDT), in spot and linear alike when both serve it; without
:SYMBOL a fault hits every symbol. Faults:
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
(or "count": N; "symbol": "ETHUSDT" aims it); GET /_control/state shows what fired."""

_ITEM = re.compile(r"^(?P<name>[a-z0-9]+)(:(?P<symbol>[^@]*))?"
                   r"@(?P<at>\d+(\.\d+)?)s?(\+(?P<arg>\d+(\.\d+)?)s?)?$")


class FaultError(ValueError):
    """A fault name, time, argument or symbol that does not parse."""


@dataclass(frozen=True)
class Fault:
    """One fault: its name, argument (seconds or count), when scheduled its time, and the
    symbol it is aimed at (None: every symbol)."""

    name: str
    arg: float | int | None = None
    at_s: float | None = None
    symbol: str | None = None

    def describe(self) -> str:
        unit, _ = KINDS[self.name]
        if unit is None:
            what = self.name
        else:
            what = f"{self.name} {self.arg:g} s" if unit == "seconds" else f"{self.name} x{self.arg}"
        return what if self.symbol is None else f"{what} on {self.symbol}"


def make_fault(name: str, arg: float | int | None = None, at_s: float | None = None,
               symbol: str | None = None) -> Fault:
    """A checked :class:`Fault`, with the kind's default argument when none is given."""
    if name not in KINDS:
        raise FaultError(f"unknown fault {name!r} (known: {', '.join(KINDS)})")
    if symbol is not None:
        try:
            check_symbol(symbol, f"fault {name}")
        except ConfigError as exc:
            raise FaultError(str(exc)) from None
    unit, default = KINDS[name]
    if unit is None:
        if arg is not None:
            raise FaultError(f"fault {name!r} takes no +ARG")
        return Fault(name, None, at_s, symbol)
    value = default if arg is None else arg
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultError(f"fault {name!r} needs a number of {unit}, got {value!r}")
    if unit == "count":
        if float(value) != int(value) or int(value) < 1:
            raise FaultError(f"fault {name!r} needs a whole count >= 1, got {value!r}")
        return Fault(name, int(value), at_s, symbol)
    if not float(value) > 0:
        raise FaultError(f"fault {name!r} needs a positive duration, got {value!r}")
    return Fault(name, float(value), at_s, symbol)


def parse_schedule(text: str) -> list[Fault]:
    """``"drop@20s,stall:ETHUSDT@40s+5s"`` as faults sorted by time."""
    faults = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _ITEM.match(item)
        if not match:
            raise FaultError(f"fault {item!r} is not NAME[:SYMBOL]@SECONDS[+ARG], e.g. stall@40s+5s")
        arg = match.group("arg")
        faults.append(make_fault(match.group("name"), float(arg) if arg else None,
                                 float(match.group("at")), match.group("symbol")))
    return sorted(faults, key=lambda f: f.at_s)


@dataclass
class Scope:
    """Deadlines and counters left by the fired faults aimed at one symbol, or at every
    symbol (times on the monotonic clock)."""

    stalled_until: float = 0.0
    nopong_until: float = 0.0
    rest403_left: int = 0
    cut_left: int = 0
    outoforder_pending: bool = False


@dataclass
class FaultState(Scope):
    """What fired faults left: its own fields for the faults aimed at every symbol,
    ``symbols`` for those aimed at one. A symbol's check sees both."""

    symbols: dict[str, Scope] = field(default_factory=dict)
    fired: list[dict] = field(default_factory=list)

    def note(self, fault: Fault, source: str, wall_ms: int) -> None:
        """Remember that ``fault`` fired and set the deadline or counter it leaves."""
        now = time.monotonic()
        scope = self if fault.symbol is None else self.symbols.setdefault(fault.symbol, Scope())
        if fault.name == "stall":
            scope.stalled_until = max(scope.stalled_until, now + fault.arg)
        elif fault.name == "nopong":
            scope.nopong_until = max(scope.nopong_until, now + fault.arg)
        elif fault.name == "rest403":
            scope.rest403_left += fault.arg
        elif fault.name == "cut":
            scope.cut_left += fault.arg
        elif fault.name == "outoforder":
            scope.outoforder_pending = True
        self.fired.append({"fault": fault.name, "arg": fault.arg, "at_ms": wall_ms, "source": source,
                           "symbol": fault.symbol})

    def stalled(self, symbol: str | None = None) -> bool:
        """Whether the stream (with ``symbol``: that symbol's topics) sends nothing now."""
        now = time.monotonic()
        scope = self.symbols.get(symbol) if symbol is not None else None
        return now < self.stalled_until or (scope is not None and now < scope.stalled_until)

    def stalled_symbols(self) -> list[str]:
        """The symbols stalled now by a fault aimed at them."""
        now = time.monotonic()
        return sorted(s for s, scope in self.symbols.items() if now < scope.stalled_until)

    def ignoring_pings(self, symbols: Iterable[str] = ()) -> bool:
        """Whether pings go unanswered on a connection subscribed to ``symbols``."""
        now = time.monotonic()
        return now < self.nopong_until or any(
            now < scope.nopong_until for s in symbols if (scope := self.symbols.get(s)) is not None)

    def take(self, counter: str, symbol: str | None = None) -> bool:
        """Use one unit of ``rest403_left`` or ``cut_left`` (the symbol's first, then the one
        for every symbol); False when none is left."""
        for scope in (self.symbols.get(symbol) if symbol is not None else None, self):
            if scope is not None and (left := getattr(scope, counter)) > 0:
                setattr(scope, counter, left - 1)
                return True
        return False

    def take_outoforder(self, symbol: str) -> bool:
        """Use a pending out-of-order fault that a trade message of ``symbol`` may serve."""
        for scope in (self.symbols.get(symbol), self):
            if scope is not None and scope.outoforder_pending:
                scope.outoforder_pending = False
                return True
        return False
