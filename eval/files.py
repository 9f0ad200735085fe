"""Files that survive crashes: written to a temp file beside the target, then ``os.replace``d,
so after a crash the target holds either the old complete file or the new one. Also the
checks that fail a long job before it starts, not after, and the lock one output takes."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class WriteError(Exception):
    """A file that could not be written; the message names it and says why, in one line."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def check_writable(folder: Path) -> None:
    """Fail before any work, not after an hour of it, when ``folder`` cannot take a new file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WriteError(f"{folder} is not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".adder-write-check.", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise WriteError(f"cannot write to {folder}: {_reason(exc)}") from None


def temp_prefix(target: Path) -> str:
    """Temp files for ``target`` carry its name and the writer's pid, so a later run can tell
    the leftovers of a killed writer (pid gone) from the files of a live one."""
    return f".{Path(target).name}.{os.getpid()}."


def remove_leftovers(target: Path) -> list[Path]:
    """Remove temp files and folders left beside ``target`` by writers that no longer run."""
    target = Path(target)
    removed = []
    for path in target.parent.glob(f".{glob.escape(target.name)}.*.tmp*"):
        pid = path.name[len(target.name) + 2 :].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            removed.append(path)
        except OSError:
            pass  # not ours to insist on; it is hidden and harmless
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; move it into place only if the block succeeds.

    An OSError while writing (read-only folder, full disk) becomes a WriteError naming
    ``target``; the old file is left as it was and the temp file removed.
    """
    target = Path(target)
    remove_leftovers(target)
    try:
        fd, name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=f".tmp{target.suffix}", dir=target.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {_reason(exc)}") from None
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make shipped models private
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {_reason(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    with atomic_path(target) as tmp:
        write(tmp)


class Busy(Exception):
    """Another live process holds the lock on a target."""


@contextmanager
def exclusive(target: Path, holder: str) -> Iterator[None]:
    """Hold a kernel lock on ``target`` for a whole run, so a second run is refused at once.

    ``flock`` is released by the kernel when its holder dies, so a lock left by a killed
    run never blocks the next one. The hidden ``.NAME.lock`` file stays (deleting it
    would let a third run lock a fresh file while the second still holds the old one).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    lock_path = Path(target).with_name(f".{Path(target).name}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WriteError(f"cannot write {lock_path}: {_reason(exc)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running = os.pread(fd, 300, 0).decode("utf-8", errors="replace").strip() or "another process"
            raise Busy(f"{target} is being written by {running}; wait for it to end or choose another output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
