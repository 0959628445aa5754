"""Output paths that never destroy an input: the one check every command makes before it writes anything."""

from __future__ import annotations

import os
from pathlib import Path

from mlx_style.errors import MlxStyleError
from mlx_style.io.weights import WeightFileError


class OutputPathError(MlxStyleError, ValueError):
    """An output path that would overwrite an input or that no writer here can produce."""


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: any spelling (``../``, symlinks, hard links) of an existing file, or the
    same resolved path when the output does not exist yet."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_not_an_input(output: str | Path, inputs, flag: str = "-o") -> None:
    """Refuse an output that is one of ``inputs`` (files, or folders the output would land inside of itself).

    Raises:
        OutputPathError: naming the input and what to do.
    """
    out = Path(output)
    for source in inputs:
        if source is None:
            continue
        src = Path(str(source))
        if not src.exists():
            continue
        if same_file(out, src):
            raise OutputPathError(
                f"{flag} {output} is the input {source}: it would be overwritten; choose another output file"
            )
        if out.is_dir() and out.resolve() in src.resolve().parents:
            raise OutputPathError(
                f"{flag} {output} holds the input {source}: it would be replaced; choose another output"
            )


def check_suffix(output: str | Path, allowed, flag: str = "-o") -> str:
    """The output's lower-case suffix if a writer here produces it, else ``OutputPathError`` listing them."""
    suffix = Path(output).suffix.lower()
    if suffix not in allowed:
        raise OutputPathError(
            f"{flag} {output}: cannot write {suffix or 'a file without a suffix'}; use one of "
            f"{', '.join(sorted(allowed))}"
        )
    check_placeable(output, flag)
    return suffix


MAX_NAME_BYTES = 255 - 32  # a file system's name limit, less the room its temporary file's name needs


def check_placeable(output: str | Path, flag: str = "-o") -> None:
    """Refuse, before any work, an output that could never be written: a name too long for its temporary file,
    or a folder on its path that is a file."""
    out = Path(output)
    if len(os.fsencode(out.name)) > MAX_NAME_BYTES:
        raise OutputPathError(
            f"{flag}: the name {out.name[:40]}… is {len(os.fsencode(out.name))} bytes; use at most {MAX_NAME_BYTES}"
        )
    for folder in out.absolute().parents:
        if folder.exists():
            if not folder.is_dir():
                raise OutputPathError(f"{flag} {output}: {folder} is a file, not a folder")
            break


def check_image_output(output: str | Path, inputs, flag: str = "-o") -> None:
    """An image output that Pillow writes (by its suffix) and that is none of ``inputs``; checked before any work."""
    from mlx_style.io.image import IMAGE_EXTENSIONS

    check_suffix(output, IMAGE_EXTENSIONS, flag)
    check_not_an_input(output, inputs, flag)


# Local files given instead of a download (``--from``): read only when they cannot hang or exhaust memory


def check_input_file(path: str | Path, max_bytes: int, flag: str = "--from") -> Path:
    """``path``, a regular file of at most ``max_bytes``: a device (``/dev/zero``), a pipe or a folder would be read
    forever or fail oddly, and a file far larger than the one expected is a mistake or a trap.

    Raises:
        WeightFileError: missing, not a regular file, or too large.
    """
    import stat

    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        raise WeightFileError(f"no file at {path}") from None
    if not stat.S_ISREG(info.st_mode):
        raise WeightFileError(f"{flag} {path} is not a regular file (a device, a pipe or a folder): give the file")
    if info.st_size > max_bytes:
        raise WeightFileError(
            f"{flag} {path} has {info.st_size / 1e6:.0f} MB, more than the {max_bytes / 1e6:.0f} "
            "MB such a file may have: not the file expected"
        )
    return path


def read_input_file(path: str | Path, max_bytes: int, flag: str = "--from") -> bytes:
    """The bytes of ``path`` after ``check_input_file``, read with the same bound (a file that grows meanwhile)."""
    with open(check_input_file(path, max_bytes, flag), "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise WeightFileError(f"{flag} {path} grew past {max_bytes / 1e6:.0f} MB while it was read")
    return data
