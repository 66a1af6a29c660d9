"""Every file this project writes or reads from a user's path, done safely.

Writes are atomic (a unique temp file beside the target, `O_EXCL`, then a rename), go to
regular files only, never onto one of the command's own inputs, and give the file the mode a
plain `open()` would (an existing file keeps its mode; a new one gets 0666 less the umask).
Temp files carry the writer's pid, so a later write into the same folder removes those that a
killed process left behind. Reads of small text inputs are capped.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from .errors import ExportError

__all__ = ["check_output", "atomic_write", "read_text_capped", "real_folder",
           "external_data_files", "TEMP_TAG"]

TEMP_TAG = "torch-rnn-onnx-tmp"
_STALE = re.compile(rf"^\..+\.{TEMP_TAG}\.(\d+)\.")
CONFIG_LIMIT = 1 << 20   # bytes of a --config / --module-kwargs file


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()
                 ) -> Path:
    """Refuse an output path that cannot be an atomically replaced regular file, or that is
    one of the command's inputs; return it as a Path."""
    text = os.fspath(path)
    target = Path(text)
    if not text or text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise ExportError(f"output path names a directory, not a file: {text!r}")
    if len(os.fsencode(target.name)) > 255 - 64:
        raise ExportError(f"output file name is too long ({len(os.fsencode(target.name))} "
                          f"bytes; at most 191): {target.name[:40]}…")
    parent = target.parent
    try:
        if not parent.is_dir():
            raise ExportError(f"output directory does not exist: {parent}")
        st = os.stat(target) if os.path.lexists(target) else None
    except OSError as exc:
        raise ExportError(f"cannot use output path {text}: {_why(exc)}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise ExportError(f"output path is a directory: {target}")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ExportError(f"output path exists and is not a regular file: {target}")
    for other in inputs:
        if other is None:
            continue
        try:
            same = st is not None and os.path.exists(other) and os.path.samefile(target, other)
        except OSError:
            same = False
        if same or os.path.abspath(target) == os.path.abspath(other):
            raise ExportError(f"output {target} is also an input of this command; "
                              "refusing to overwrite it")
    return target


def real_folder(path: str | os.PathLike) -> Path:
    """Make sure `path` is a directory of its own (created with its parents if missing): not
    a file, not a device, not a symbolic link (writing through a link planted in an output
    folder would write wherever it points)."""
    p = Path(path)
    if p.is_symlink():
        raise ExportError(f"output folder {p} is a symbolic link; refusing to write through it")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ExportError(f"output folder {p} exists and is not a directory") from None
    except OSError as exc:
        raise ExportError(f"cannot create output folder {p}: {_why(exc)}") from None
    if not p.is_dir():
        raise ExportError(f"output folder {p} is not a directory")
    return p


def _remove_stale(parent: Path) -> None:
    """Delete temp files of writers that no longer run (killed before their rename)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        m = _STALE.match(name)
        if not m:
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
            continue                      # its writer still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(parent / name)
        except OSError:
            pass


def _mode_for(target: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None] | bytes,
                 inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Write `path` atomically: `write(tmp_path)` (or the bytes) into a unique temp file in
    the target's folder, then rename over the target. A failure leaves the target as it was."""
    target = check_output(path, inputs)
    parent = target.parent
    _remove_stale(parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{TEMP_TAG}.{os.getpid()}.",
                                        suffix=".tmp", dir=parent)
    except OSError as exc:
        raise ExportError(f"cannot write to {parent}: {_why(exc)}") from None
    tmp = Path(tmp_name)
    try:
        if isinstance(write, (bytes, bytearray)):
            with os.fdopen(fd, "wb") as fh:
                fh.write(write)
        else:
            os.close(fd)
            write(tmp)
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise ExportError(f"cannot write {target}: no space left on device") from None
        raise ExportError(f"cannot write {target}: {_why(exc)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def read_text_capped(path: str | os.PathLike, what: str, limit: int = CONFIG_LIMIT) -> str:
    """A small text input (a JSON config): a regular file, at most `limit` bytes, UTF-8."""
    p = Path(path)
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise ExportError(f"{what} {p} is not a regular file")
        with open(p, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise ExportError(f"{what} not found: {p}") from None
    except OSError as exc:
        raise ExportError(f"cannot read {what} {p}: {_why(exc)}") from None
    if len(data) > limit:
        raise ExportError(f"{what} {p} is larger than {limit:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ExportError(f"{what} {p} is not UTF-8 text") from None


def external_data_files(model_path: str | os.PathLike) -> list[str]:
    """The external-data files an ONNX model names (relative to its folder). Each must be a
    plain relative path to a regular file inside the model's folder: a location such as
    "../../etc/passwd" or an absolute path is refused (ExportError) before any runtime reads
    it."""
    import onnx

    path = Path(model_path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"cannot read ONNX model {path}: {str(exc).splitlines()[0][:300]}") \
            from None
    folder = path.resolve().parent
    found: list[str] = []
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if (not location or os.path.isabs(location) or folder not in target.parents
                or not target.is_file()):
            raise ExportError(f"{path}: tensor {tensor.name[:80]!r} keeps its data in "
                              f"{location[:200]!r}, which is not a file inside the model's "
                              "folder; refusing to read it")
        if location not in found:
            found.append(location)
    return found
