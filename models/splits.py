"""Splits of window ends into train, validation and test ranges, in time order: one
chronological split, or expanding walk-forward folds. Ranges index the training data's time
axis (:class:`models.pooled.Pool`), which for one symbol is its bar rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    """Row ranges (window ends) of one train / validation / test split."""

    train: range
    val: range
    test: range


def chronological_split(n_rows: int, val_frac: float, test_frac: float, gap: int = 0,
                        start: int = 0) -> Fold:
    """Rows ``[start, n_rows)`` as train, then validation, then test, in time order, with
    ``gap`` rows dropped before validation and before test."""
    n = n_rows - start
    n_test, n_val = round(n * test_frac), round(n * val_frac)
    test = range(n_rows - n_test, n_rows)
    val = range(max(test.start - gap - n_val, start), max(test.start - gap, start))
    return Fold(range(start, max(val.start - gap, start)), val, test)


def walk_forward_folds(n_rows: int, n_folds: int, val_frac: float = 0.2, gap: int = 0,
                       start: int = 0) -> list[Fold]:
    """Expanding-window folds over rows ``[start, n_rows)``: they are cut into
    ``n_folds + 1`` blocks and fold k tests on block k + 1 after training on everything
    before it (its last ``val_frac`` as validation); ``gap`` rows are dropped before each
    validation and test range. ``start`` is typically :func:`models.pooled.first_usable_row`."""
    if n_folds < 1:
        raise ValueError("walk-forward needs at least one fold")
    edges = np.linspace(start, n_rows, n_folds + 2).astype(int)
    folds = []
    for k in range(n_folds):
        history_end = max(int(edges[k + 1]) - gap, start)
        n_val = round((history_end - start) * val_frac)
        val = range(history_end - n_val, history_end)
        folds.append(Fold(range(start, max(val.start - gap, start)), val,
                          range(int(edges[k + 1]), int(edges[k + 2]))))
    return folds
