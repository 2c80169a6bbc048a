"""The one way prunekit writes a file: a temporary file in the same folder, fsync, then a rename.

A reader or a crash never sees a half-written file (the old one stays until the new one is whole), and
the file gets the permissions any other file the user creates gets (``0666 & ~umask``, 0644 under umask
022): the temporary file is created with ``os.open(..., 0o666)``, the kernel applies the umask, and that mode
is set again after a writer callback (some libraries write a private 0600 file of their own).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable, Union

Content = Union[bytes, bytearray, memoryview, str, Callable[[Path], object]]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # folders cannot be opened on some platforms; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished temporary file onto ``path``; without ``overwrite`` never replace an existing file,
    even one created by someone else while this one was being written."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails with FileExistsError instead of replacing
    except FileExistsError:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None
    except OSError:  # file systems without hard links: check, then rename
        if path.exists():
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def atomic_write(path: str | os.PathLike, content: Content, overwrite: bool = False,
                 encoding: str = "utf-8") -> Path:
    """Write ``content`` to ``path`` atomically and return the path.

    Args:
        path: the file to write; its folder is created if needed.
        content: bytes, text (encoded with ``encoding``), or a writer ``fn(tmp_path)`` that writes the file
            itself (``torch.save``, ``safetensors.torch.save_file``...).
        overwrite: replace an existing file; otherwise an existing file raises FileExistsError. A folder at
            ``path`` always raises IsADirectoryError.
        encoding: the encoding of text content.

    Returns:
        ``path`` as a Path.

    Example:
        >>> atomic_write("out/report.json", '{"ok": true}\\n', overwrite=True)  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():  # a file path was expected; overwrite never replaces a folder
        raise IsADirectoryError(f"{path} is a folder; give the path of the file to write inside it")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    mode = os.fstat(fd).st_mode & 0o777  # 0666 less the umask, as the kernel applied it
    try:
        if callable(content):
            os.close(fd)
            fd = -1
            content(tmp)
            os.chmod(tmp, mode)  # some writers (safetensors) replace the file with a private one
            fd = os.open(tmp, os.O_RDONLY)
        else:
            data = content.encode(encoding) if isinstance(content, str) else bytes(content)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        _publish(tmp, path, overwrite)
        _fsync_dir(path.parent)
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp.exists():
            tmp.unlink()
    return path
