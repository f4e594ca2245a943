"""Model checkpoints: one ``torch.save`` file holding ``{"format", "state_dict", "meta",
"digest"}``, where ``meta`` is a JSON string, so the file loads with
``torch.load(weights_only=True)``.

``digest`` holds SHA-256 digests of the weights (:func:`weights_digest`) and of the
metadata string: ``torch.load`` does not check the zip's CRCs, so without them damaged bytes
load as wrong weights or wrong normalisation. It is an added key, so ``FORMAT`` stays
``papertape-model/1``: earlier papertape versions ignore it and still read new files, and
files written before it (no ``digest``) still load, unverified.

The metadata holds: ``model`` (the :class:`EncoderConfig` fields), ``features`` (names in
input order), ``feature_lookback`` and ``feature_version`` (their definitions),
``normalization`` (per-timeframe mean/std and clip, fitted on the training window),
``interval``, ``timeframes``, ``seq_len``, ``head``, ``horizon``, ``threshold``
(classification), ``training_window`` (``open_time`` ms of the first and last window-end
bar of the train, validation and test splits: a backtest of this model should trade only
after ``test[0]``), ``metrics``, ``seed`` and ``code_version``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import torch

from models.encoder import EncoderConfig, SeriesEncoder
from models.features import FEATURE_VERSION, LOOKBACK

FORMAT = "papertape-model/1"
META_KEYS = ("model", "features", "feature_lookback", "normalization", "interval", "timeframes",
             "seq_len", "head", "horizon")  # what loading and inference read


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


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _meta_digest(text: str) -> str:
    """SHA-256 of the metadata's JSON text: it holds the normalisation, as vital as weights."""
    return hashlib.sha256(text.encode()).hexdigest()


def check_writable(path: str | Path) -> None:
    """Refuse a checkpoint path that cannot be written (missing or read-only directory, a
    directory itself), so a run fails before training rather than after."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.parent.is_dir():
        raise CheckpointError(f"{path}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CheckpointError(f"{path}: not writable")
    try:  # the real thing: root passes os.access where no file can be made (/proc, a full disk)
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as exc:
        raise CheckpointError(f"{path}: not writable ({exc.strerror or exc})") from None


def save_checkpoint(path: str | Path, model: SeriesEncoder, meta: dict) -> None:
    """Write the state dict, metadata (model config added) and their digests to ``path``."""
    check_writable(path)
    text = json.dumps({**meta, "model": model.config.to_dict()})
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "state_dict": state, "meta": text,
                "digest": {"weights": weights_digest(state), "meta": _meta_digest(text)}}, path)


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


def _short(exc: Exception) -> str:
    """The first sentence of an exception's message (torch's run to a page of advice)."""
    text = str(exc).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(exc).__name__


def _read(path: str | Path, device: str) -> dict:
    """The checkpoint's top-level dict, or a one-line :class:`CheckpointError` saying why the
    file is not one."""
    foreign = f"{path}: not a papertape model checkpoint"
    try:
        with open(path, "rb") as fh:
            if not zipfile.is_zipfile(fh):
                raise CheckpointError(f"{foreign} (not a torch.save zip archive: another kind of "
                                      "file, or damaged)")
            fh.seek(0)
            blob = torch.load(fh, map_location=device, weights_only=True)
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except pickle.UnpicklingError as exc:  # weights_only refused it: it pickles Python objects
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"a {found.group(1)} object" if found else "Python objects"
        raise CheckpointError(f"{foreign} (it holds {what}, not weights and metadata)") from None
    except Exception as exc:  # torch raises several types for damaged archives
        raise CheckpointError(f"{foreign} ({_short(exc)})") from None
    if not isinstance(blob, dict):
        raise CheckpointError(f"{foreign} (it holds a {type(blob).__name__}, not a dict)")
    if blob.get("format") != FORMAT:
        found = f"format {blob['format']!r}, not {FORMAT!r}" if "format" in blob else "no format tag"
        raise CheckpointError(f"{foreign} ({found})")
    if not isinstance(blob.get("state_dict"), dict) or not isinstance(blob.get("meta"), str):
        raise CheckpointError(f"{foreign} (no state_dict or no meta)")
    return blob


def _verify(path: str | Path, blob: dict) -> None:
    """Refuse weights or metadata that differ from the digests saved with them."""
    digest = blob.get("digest")
    if digest is None:
        return
    if not isinstance(digest, dict):
        raise CheckpointError(f"{path}: its digest is unreadable: the file is damaged")
    if digest.get("weights") != weights_digest(blob["state_dict"]):
        raise CheckpointError(f"{path}: weights do not match their digest: the file is damaged")
    if digest.get("meta") != _meta_digest(blob["meta"]):
        raise CheckpointError(f"{path}: metadata does not match its digest: the file is damaged")


def _metadata(path: str | Path, text: str) -> dict:
    """The metadata parsed, refused when it lacks a key that loading or inference reads."""
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from None
    missing = [key for key in META_KEYS if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise CheckpointError(f"{path}: metadata lacks {', '.join(missing)}")
    return meta


def _shape_mismatch(model: SeriesEncoder, state: dict) -> str | None:
    """How ``state`` differs from the tensors ``model`` has (names, shapes), or None."""
    want = model.state_dict()
    problems = [f"{name} missing" for name in want if name not in state]
    problems += [f"unexpected {name}" for name in state if name not in want]
    problems += [f"{name} is {list(state[name].shape)} in the file but {list(t.shape)} "
                 "by the metadata" for name, t in want.items()
                 if name in state and state[name].shape != t.shape]
    if not problems:
        return None
    more = f", and {len(problems) - 1} more" if len(problems) > 1 else ""
    return problems[0] + more


def load_checkpoint(path: str | Path, features: list[str] | None = None,
                    device: str = "cpu") -> tuple[SeriesEncoder, dict]:
    """Rebuild the model in eval mode and return it with its metadata; with ``features``,
    refuse a checkpoint trained on other features. Anything wrong with the file is one
    :class:`CheckpointError` line naming it."""
    blob = _read(path, device)
    _verify(path, blob)
    meta = _metadata(path, blob["meta"])
    check_features(meta, meta["features"] if features is None else features)
    try:
        model = SeriesEncoder(EncoderConfig(**meta["model"])).to(device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: its metadata describes no model ({_short(exc)})") from None
    mismatch = _shape_mismatch(model, blob["state_dict"])
    if mismatch:
        raise CheckpointError(f"{path}: metadata does not match the weights ({mismatch})")
    model.load_state_dict(blob["state_dict"])
    return model.eval(), meta
