"""The options each attention kind takes, with their types and ranges: the one place that
checks them, for ``build_attention``, ``TrainConfig`` and the ``train`` command alike.

Torch-free, so the command line reads it without loading torch. Values must already have
their type (``True`` not ``"true"``, ``16`` not ``"16"``); a wrong one is refused with one
line naming the kind, the option and what it must be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Rule(NamedTuple):
    """A test of an option's value and, for the message, what the value must be."""

    ok: Callable[[Any], bool]
    must_be: str


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _whole(value) and value >= 1


POSITIVE = Rule(_positive, "a whole number >= 1")
POSITIVE_OR_DEFAULT = Rule(lambda v: v is None or _positive(v), "a whole number >= 1")
FLAG = Rule(lambda v: isinstance(v, bool), "true or false")
WHOLE = Rule(_whole, "a whole number")
ODD = Rule(lambda v: _positive(v) and v % 2 == 1, "an odd whole number >= 1")
BUCKETS = Rule(lambda v: v is None or (_positive(v) and (v == 1 or v % 2 == 0)),
               "1 or an even whole number (angular LSH uses ±rotations)")

OPTIONS: dict[str, dict[str, Rule]] = {  # kind -> its constructor's options
    "full": {},
    "linformer": {"k": POSITIVE_OR_DEFAULT, "share_kv": FLAG, "share_heads": FLAG},
    "reformer": {"n_hashes": POSITIVE, "bucket_size": POSITIVE, "causal": FLAG,
                 "n_buckets": BUCKETS, "seed": WHOLE},
    "nystrom": {"num_landmarks": POSITIVE, "pinv_iterations": POSITIVE, "residual_conv": FLAG,
                "conv_kernel": ODD},
}


def kinds_taking(option: str) -> tuple[str, ...]:
    """The attention kinds that take ``option``."""
    return tuple(kind for kind, options in OPTIONS.items() if option in options)


def check_options(kind: str, options: dict[str, Any], tokens: int | None = None) -> None:
    """Refuse an unknown ``kind``, an option it does not take, or a value of the wrong type or
    range (ValueError). With ``tokens``, the window length of a model about to be trained,
    also refuse a Linformer ``k`` above it: projecting keys and values to more rows than the
    window has saves nothing over full attention (checkpoints made before still load)."""
    if kind not in OPTIONS:
        raise ValueError(f"unknown attention {kind!r}; choose one of {', '.join(OPTIONS)}")
    rules = OPTIONS[kind]
    for name, value in options.items():
        if name not in rules:
            known = f"its options: {', '.join(rules)}" if rules else "it takes none"
            raise ValueError(f"{kind} takes no option {name!r}; {known}")
        if not rules[name].ok(value):
            raise ValueError(f"{kind} option {name} must be {rules[name].must_be}, got {value!r}")
    k = options.get("k")
    if kind == "linformer" and tokens is not None and k is not None and k > tokens:
        raise ValueError(f"linformer k {k} exceeds the {tokens} tokens of a window: k is the "
                         f"length keys and values are projected down to, so at most {tokens}")
