"""Model checkpoints: one ``torch.save`` file holding ``{"format", "state_dict", "meta"}``,
where ``meta`` is a JSON string, so the file loads with ``torch.load(weights_only=True)``.

The metadata holds: ``model`` (the :class:`EncoderConfig` fields), ``features`` (names in
input order), ``feature_lookback`` and ``feature_version`` (their definitions),
``normalization`` (per-timeframe mean/std and clip, fitted on the training window),
``interval``, ``timeframes``, ``seq_len``, ``head``, ``horizon``, ``threshold``
(classification), ``training_window`` (``open_time`` ms of the first and last window-end
bar of the train, validation and test splits: a backtest of this model should trade only
after ``test[0]``), ``metrics``, ``seed`` and ``code_version``.
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from models.encoder import EncoderConfig, SeriesEncoder
from models.features import FEATURE_VERSION, LOOKBACK

FORMAT = "papertape-model/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why."""


class FeatureMismatchError(CheckpointError):
    """The checkpoint's features differ from the ones the data provides."""


def code_version() -> str:
    """``git describe`` of the source tree when available, else the package version."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"],
                             cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        try:
            return metadata.version("papertape")
        except metadata.PackageNotFoundError:
            return "unknown"


def save_checkpoint(path: str | Path, model: SeriesEncoder, meta: dict) -> None:
    """Write the state dict and metadata (model config added) to ``path``."""
    meta = {**meta, "model": model.config.to_dict()}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "state_dict": state, "meta": json.dumps(meta)}, path)


def check_features(meta: dict, features: list[str] | tuple[str, ...]) -> None:
    """Refuse a checkpoint whose features are not exactly ``features`` (names, order and
    definitions)."""
    want, have = list(meta["features"]), list(features)
    if want != have:
        missing = [f for f in want if f not in have]
        extra = [f for f in have if f not in want]
        detail = "; ".join(filter(None, [
            missing and f"missing {', '.join(missing)}",
            extra and f"unexpected {', '.join(extra)}",
            not missing and not extra and "different order"]))
        raise FeatureMismatchError(
            f"checkpoint was trained on features [{', '.join(want)}] but the data has "
            f"[{', '.join(have)}] ({detail})")
    changed = [f for f in want if LOOKBACK.get(f) != meta["feature_lookback"].get(f)]
    if changed or meta.get("feature_version") != FEATURE_VERSION:
        raise FeatureMismatchError(
            "feature definitions changed since the checkpoint was made "
            f"(version {meta.get('feature_version')} -> {FEATURE_VERSION}"
            + (f"; {', '.join(changed)}" if changed else "") + "): retrain it")


def load_checkpoint(path: str | Path, features: list[str] | None = None,
                    device: str = "cpu") -> tuple[SeriesEncoder, dict]:
    """Rebuild the model in eval mode and return it with its metadata; with ``features``,
    refuse a checkpoint trained on other features."""
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a papertape model checkpoint")
    meta = json.loads(blob["meta"])
    check_features(meta, meta["features"] if features is None else features)
    model = SeriesEncoder(EncoderConfig(**meta["model"])).to(device)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), meta
