"""Output paths that never destroy an input: the one check every command makes before it writes anything."""

from __future__ import annotations

import os
from pathlib import Path

from mlx_style.errors import MlxStyleError


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
            raise OutputPathError(f"{flag} {output} is the input {source}: it would be overwritten; choose another "
                                  "output file")


def check_suffix(output: str | Path, allowed, flag: str = "-o") -> str:
    """The output's lower-case suffix if a writer here produces it, else ``OutputPathError`` listing them."""
    suffix = Path(output).suffix.lower()
    if suffix not in allowed:
        raise OutputPathError(f"{flag} {output}: cannot write {suffix or 'a file without a suffix'}; use one of "
                              f"{', '.join(sorted(allowed))}")
    return suffix


def check_image_output(output: str | Path, inputs, flag: str = "-o") -> None:
    """An image output that Pillow writes (by its suffix) and that is none of ``inputs``; checked before any work."""
    from mlx_style.io.image import IMAGE_EXTENSIONS

    check_suffix(output, IMAGE_EXTENSIONS, flag)
    check_not_an_input(output, inputs, flag)
