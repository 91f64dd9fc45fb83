"""Writing files that a user keeps: atomically, with the user's umask, and with one clear
sentence when the disk is full, the folder is not writable or a name is too long; reading
back the JSON files written here (``read_json``), with one sentence naming a damaged file;
and the lock that gives a folder a single writing process.

Every file nacvae itself writes (run configurations, checkpoints, metrics, exports, study
tables) goes through this module; TensorBoard events and figures are written by their
libraries, and the command line reports a full disk there in one sentence too. A file is
written to a temporary file in its folder and renamed into place, so a reader never sees
half of it and a failed write leaves the previous version intact. Temporary files are
created with mode 0666 minus the umask, as ``open`` does, so that run folders shared with
colleagues stay readable.
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable

from nacvae.errors import CheckpointError, ConfigError, StorageError

LOCK_NAME = ".lock"

# errno values that mean "no room to write", and "not allowed to write here".
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
# The length a file system allows for one folder or file name where it does not say.
NAME_MAX = 255


def storage_error(exc: OSError, path: str | Path | None) -> StorageError:
    """The one-sentence error for an OSError met while writing ``path`` (None: unknown);
    it keeps the OSError's ``errno``."""
    error = _storage_error(exc, path)
    error.errno = exc.errno
    return error


def _storage_error(exc: OSError, path: str | Path | None) -> StorageError:
    if exc.errno == errno.ENAMETOOLONG:  # met on reading as on writing, so worded for both
        if path is None:
            return StorageError("A path is longer than the file system allows.")
        return StorageError(f"{path} cannot be used: a folder or file name in it is longer than the file system "
                            "allows.")
    if path is None:
        if exc.errno in DISK_FULL:
            return StorageError("The disk is full: a file could not be written.")
        return StorageError(f"A file could not be written ({exc.strerror or exc}).")
    path = Path(path)
    if exc.errno in DISK_FULL:
        return StorageError(f"The disk is full: {path} could not be written in {path.parent}.")
    if exc.errno in NOT_WRITABLE:
        return StorageError(f"{path} could not be written: {path.parent} is not writable ({exc.strerror}).")
    return StorageError(f"{path} could not be written ({exc.strerror or exc}).")


def is_storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that the disk or the folder's permissions refused."""
    return isinstance(exc, (StorageError, OSError)) and getattr(exc, "errno", None) in DISK_FULL | NOT_WRITABLE


def check_name_lengths(path: str | Path) -> None:
    """Refuse, before anything is created, a path with a folder or file name longer than its
    file system allows (``pathlib`` then raises ENAMETOOLONG from a mere ``exists()``)."""
    path = Path(path)
    ancestor = path.absolute()
    while True:
        try:
            if ancestor.exists():
                break
        except OSError:
            pass
        ancestor = ancestor.parent
    try:
        limit = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = NAME_MAX
    for name in path.parts:
        size = len(os.fsencode(name))
        if size > limit:
            shown = name if len(name) <= 24 else name[:20] + "..."
            raise ConfigError(f"{path} cannot be used: the name '{shown}' has {size} bytes, more than the {limit} "
                              "the file system allows for one folder or file name.")


def read_json(path: str | Path, fix: str | None = None,
              check: Callable[[Any], str | None] | None = None) -> Any:
    """The value of a JSON file that nacvae wrote, checked: a file that is cut short, junk or
    (``check`` returns what is wrong with the value) not what it should be ends in one
    sentence naming it, followed by ``fix``, what to do about it, when given."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        problem = "it is not valid JSON"
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({exc.strerror or exc}).") from None
    else:
        problem = check(value) if check is not None else None
        if problem is None:
            return value
    raise CheckpointError(f"{path} is damaged: {problem}" + (f"; {fix}" if fix else "") + ".")


def make_dirs(path: str | Path) -> list[Path]:
    """Create ``path`` and missing parents (umask modes); returns those created, outermost
    first, so that a failed command can remove exactly what it made (``remove_dirs``)."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    missing.reverse()
    for folder in missing:
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            remove_dirs(missing[:missing.index(folder)])
            if exc.errno in DISK_FULL | NOT_WRITABLE:
                raise storage_error(exc, folder) from None
            raise ConfigError(f"The folder {folder} cannot be created ({exc.strerror}).") from None
    return missing


def remove_dirs(created: list[Path]) -> None:
    """Remove folders that ``make_dirs`` created, innermost first, where they are empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            return


class _Recorder(io.RawIOBase):
    """A file wrapper that keeps the OSError of a failed write: torch.save turns it into a
    RuntimeError without the errno, which is needed to say that the disk is full."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.error = f, None

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        try:
            return self.f.write(b)
        except OSError as exc:
            self.error = exc
            raise


def _create_temp(path: Path) -> Path:
    """A new empty file beside ``path``, with mode 0666 minus the umask."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any], overwrite: bool = True) -> None:
    """Call ``write(f)`` on a temporary file beside ``path`` and rename it into place.

    Missing folders are created (and removed again on failure). On any failure nothing
    is left: no temporary file, and the previous ``path`` intact. Disk-full and
    permission errors become a ``StorageError``. With ``overwrite`` False an existing
    ``path`` is an error.
    """
    path = Path(path)
    created = make_dirs(path.parent)
    tmp, done = None, False
    try:
        tmp = _create_temp(path)
        with open(tmp, "r+b") as f:
            recorder = _Recorder(f)
            try:
                write(recorder)
            except RuntimeError:
                if recorder.error is not None:
                    raise recorder.error from None
                raise
            f.flush()
            os.fsync(f.fileno())  # a full disk can show only here (delayed allocation)
        if not overwrite and path.exists():
            raise ConfigError(f"{path} already exists; pass --force to replace it.")
        os.replace(tmp, path)
        done = True
    except OSError as exc:
        raise storage_error(exc, path) from None
    finally:
        if not done:
            if tmp is not None:
                _unlink(tmp)
            remove_dirs(created)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def save_torch(path: str | Path, obj: Any, overwrite: bool = True) -> None:
    """``torch.save(obj)`` to ``path``, atomically."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f), overwrite=overwrite)


def append_line(path: str | Path, line: str) -> None:
    """Append one line to a log file. A line cut short earlier (a process killed while
    appending, a full disk) is ended first, so that it cannot swallow this one."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            if end > 0 and os.pread(fd, 1, end - 1) != b"\n":
                data = b"\n" + data
            _append(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise storage_error(exc, path) from None


def _append(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def rewrite_in_place(path: str | Path, text: str) -> bool:
    """Overwrite a small file in place, for when the disk is too full for a temporary copy
    (recording a run's final status); returns success and never raises."""
    try:
        with open(path, "r+b") as f:
            f.write(text.encode("utf-8"))
            f.truncate()
        return True
    except OSError:
        return False


def remove_tree(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -------------------------------------------------------------------------- the lock


class FolderLock:
    """An exclusive lock on a folder, held through ``fcntl.flock`` on ``folder/.lock``.

    The operating system drops the lock when its process ends, however it ends (SIGKILL
    too), so a stale lock cannot outlive a crash. The file holds the holder's process id,
    for the message another process gets.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def acquire(self, what: str = "folder") -> "FolderLock":
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise storage_error(exc, self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise storage_error(exc, self.path) from None
            raise self._in_use(what, holder) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is only for messages; the lock is what matters
        self.fd = fd
        return self

    def check_free(self, what: str = "folder") -> None:
        """Raise the "in use" error if another process holds the lock; changes nothing."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return  # no lock file (or none readable): nobody to wait for
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raise self._in_use(what, _read_pid(fd)) from None
        finally:
            os.close(fd)

    def _in_use(self, what: str, holder: int | None) -> ConfigError:
        by = f"process {holder}" if holder else "another process"
        return ConfigError(f"The {what} {self.folder} is in use by nacvae {by}; wait for it to finish, or stop "
                           "it and continue with --resume.")

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text.isdigit() else None
    except (OSError, ValueError):
        return None
