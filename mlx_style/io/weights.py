"""Weight files: self-describing safetensors, checked on load, written atomically. Never unpickles.

Every file carries string metadata: ``format`` (``mlx_style``), ``kind`` (``transformer`` or ``vgg``), the network
``config`` (JSON), ``preprocess`` for VGG weights, ``source`` (a file name, URL or hash: never a local folder),
``sha256`` of the tensors and ``metadata_sha256`` of every other field, so one file rebuilds its network and a
corrupt, altered or foreign file is refused with a message saying what to do.

Files are written to a temporary file that is flushed and fsynced, renamed into place, then the folder is fsynced:
a crash or power cut leaves either the old file or the new one. A write that fails (a full disk, no permission)
raises ``WeightWriteError`` naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten
from mlx_style.errors import MlxStyleError, RunFailure

FORMAT = "mlx_style"


class WeightFileError(MlxStyleError, ValueError):
    """A weight file that cannot be used; the message says why and what to do."""


def tensors_sha256(arrays: dict[str, mx.array]) -> str:
    """A checksum of names, dtypes, shapes and bytes, independent of the file's byte layout."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name].astype(mx.float32) if arrays[name].dtype == mx.bfloat16 else arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (for downloads and style images)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class WeightWriteError(RunFailure, OSError):
    """A file that could not be written (full disk, permissions); the message names it and the reason, and
    ``remedy`` says what to do before trying again."""

    remedy = "fix that"


SLOW_WRITE_ENV = "MLX_STYLE_TEST_SLOW_WRITE"  # seconds each atomic write waits before its rename (fault tests)
TEMP_MARK = ".partial-"  # in the names of atomic_write's temporary files, so a later start can find and remove them


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_failure(path: Path, exc: BaseException) -> WeightWriteError:
    """One line saying why ``path`` could not be written, naming a full disk when that is the cause."""
    import errno
    import shutil

    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    full = getattr(exc, "errno", None) == errno.ENOSPC
    try:
        full = full or shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        pass
    remedy = "fix that"
    if full:
        reason, remedy = "the disk is full", "make room"
    elif getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason, remedy = "no permission to write there", "make the folder writable"
    error = WeightWriteError(f"could not write {path}: {reason}")
    error.remedy = remedy
    return error


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(tmp_path)``, fsync the file, rename it over ``path`` and fsync the folder, so a crash or a
    power cut never leaves a half-written or empty file. Raises ``WeightWriteError`` when writing fails."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}{TEMP_MARK}", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_failure(path, exc) from None
    try:
        write(tmp)
        if os.environ.get(SLOW_WRITE_ENV):  # tests only: widen the window in which a kill finds a half-done write
            time.sleep(float(os.environ[SLOW_WRITE_ENV]))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except (OSError, RuntimeError) as exc:  # MLX reports a failed write as RuntimeError("[write] ...")
        if os.path.exists(tmp):
            os.remove(tmp)
        raise _write_failure(path, exc) from None
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary files of ``atomic_write`` calls that were killed mid-write; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    doomed = [p for p in folder.iterdir() if p.name.startswith(".") and TEMP_MARK in p.name and p.is_file()]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def metadata_sha256(metadata: dict[str, str]) -> str:
    """A checksum of every metadata field but the two checksums themselves."""
    fields = {k: v for k, v in metadata.items() if k not in ("sha256", "metadata_sha256")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def save_weights(path: str | Path, arrays: dict[str, mx.array], metadata: dict[str, str]) -> Path:
    """Write ``arrays`` and string ``metadata`` (plus format and checksum) to a safetensors file atomically."""
    arrays = dict(arrays)
    meta = {"format": FORMAT, **{k: str(v) for k, v in metadata.items()}, "sha256": tensors_sha256(arrays)}
    meta["metadata_sha256"] = metadata_sha256(meta)
    if not str(path).endswith(".safetensors"):
        raise WeightFileError(f"weight files must end in .safetensors, got {path}")
    return atomic_write(path, lambda tmp: mx.save_safetensors(tmp, arrays, metadata=meta))


MAX_HEADER_BYTES = 100_000_000  # a header that large is not a safetensors file
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "U16": 2,
    "I16": 2,
    "F16": 2,
    "BF16": 2,
    "U32": 4,
    "I32": 4,
    "F32": 4,
    "U64": 8,
    "I64": 8,
    "F64": 8,
}


def read_header(path: str | Path) -> dict:
    """A safetensors file's JSON header, checked against the file before any tensor is read: every tensor's
    dtype and shape are plausible and its bytes lie inside the file, exactly, without overlap. So a loader never
    allocates more than the file's own bytes. Raises ``ValueError`` naming the first problem."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("file too short")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise ValueError("implausible header length")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    data_size, spans = size - 8 - length, []
    for name, entry in header.items():
        if name == "__metadata__":
            if entry is not None and (
                not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values())
            ):
                raise ValueError("metadata must map names to strings")
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"tensor {name!r} has no description")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPE_BYTES:
            raise ValueError(f"tensor {name!r} has unknown dtype {dtype!r}")
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape)
        ):
            raise ValueError(f"tensor {name!r} has an invalid shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise ValueError(f"tensor {name!r} has invalid data offsets")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise ValueError(f"tensor {name!r} lies outside the file (truncated?)")
        if end - begin != int(np.prod(shape, dtype=np.float64)) * DTYPE_BYTES[dtype]:
            raise ValueError(f"tensor {name!r}: its shape does not match its {end - begin} bytes")
        spans.append((begin, end))
    spans.sort()
    if any(b0 < a1 for (_, a1), (b0, _) in zip(spans, spans[1:])):
        raise ValueError("tensors overlap")
    return header


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file, read from its (checked) header without loading any tensor."""
    return dict(read_header(path).get("__metadata__") or {})


def load_weights(path: str | Path, kind: str | None = None) -> tuple[dict[str, mx.array], dict[str, str]]:
    """Read a weight file, check its format, kind and checksum; return ``(arrays, metadata)``."""
    path = Path(path)
    if not path.exists():
        raise WeightFileError(f"no weight file at {path}")
    if path.suffix != ".safetensors":
        raise WeightFileError(f"{path} is not a .safetensors file (pickled .pth/.ckpt files are never loaded)")
    try:
        read_header(path)  # before MLX reads anything: shapes, offsets and sizes must agree with the file
        arrays, meta = mx.load(str(path), return_metadata=True)
    except Exception as exc:  # MLX raises RuntimeError/ValueError on truncated or foreign bytes
        raise WeightFileError(f"{path} is not a readable safetensors file ({exc}); re-create or re-download it")
    if meta.get("format") != FORMAT:
        raise WeightFileError(
            f"{path} was not written by mlx_style (no format metadata); convert it first "
            "(scripts/convert_vgg.py for VGG, scripts/convert_fst.py for style networks)"
        )
    if kind is not None and meta.get("kind") != kind:
        raise WeightFileError(f"{path} holds a {meta.get('kind')!r} network, but a {kind!r} network is needed here")
    if "sha256" in meta and tensors_sha256(arrays) != meta["sha256"]:
        raise WeightFileError(f"{path} is corrupt: its tensors do not match the checksum in its metadata")
    if "metadata_sha256" in meta and metadata_sha256(meta) != meta["metadata_sha256"]:
        raise WeightFileError(
            f"{path} is corrupt: its metadata does not match its checksum (edited or damaged); "
            "re-create or re-download it"
        )
    bad = next(
        (k for k, a in arrays.items() if mx.issubdtype(a.dtype, mx.floating) and not mx.all(mx.isfinite(a))), None
    )
    if bad is not None:  # a checksum can be recomputed over NaNs: they would paint every picture black
        raise WeightFileError(
            f"{path} holds values that are not finite numbers (in {bad}); re-create or re-download it"
        )
    return arrays, meta


def check_and_load(module: nn.Module, arrays: dict[str, mx.array], where: str = "weights") -> None:
    """Load ``arrays`` into ``module`` strictly: every key present, no extra key, every shape equal."""
    expected = dict(tree_flatten(module.parameters()))
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    misshaped = sorted(
        f"{k}: file {tuple(arrays[k].shape)} vs network {tuple(expected[k].shape)}"
        for k in set(expected) & set(arrays)
        if tuple(arrays[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or misshaped:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                shown = ", ".join(items[:6]) + (f", … ({len(items)} in all)" if len(items) > 6 else "")
                parts.append(f"{label}: {shown}")
        raise WeightFileError(f"{where} do not fit the network ({'; '.join(parts)})")
    module.load_weights(list(arrays.items()), strict=True)
