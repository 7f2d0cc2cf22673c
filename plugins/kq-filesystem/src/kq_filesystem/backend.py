"""Results as files in one directory, which several machines may share (NFS, SMB, CephFS...).

Layout under the directory of ``file:///abs/path``::

    .kq-filesystem          the layout (fan-out) every process must agree on
    results/ab/<name>       one file per result, in :meth:`kq.keyvalue.Record.pack`'s framing
    counters/ab/<name>      one file per counter: its value and expiry
    claims/ab/<name>        one file per claim: its holder and expiry
    */ab/.lock              the lock file of that sub-directory's counters and claims

``ab`` is the fan-out: ``fanout`` levels of sub-directories named by a hash of the key (256 per
level), so that millions of results do not make one huge directory. ``<name>`` is the key with
every byte outside ``[A-Za-z0-9._-]`` percent-encoded (a hash when that is too long).

Why each operation is safe when many processes (and machines) share the directory:

- **Writes are atomic.** A file is written whole under a temporary name in its own directory,
  flushed to disk (``fsync`` option), then renamed over the old one (``os.replace``, atomic on
  POSIX filesystems and NFS). A reader sees the old file or the new one, never half of one; a
  crash leaves at worst a ``.tmp-*`` file, which :meth:`cleanup` deletes once it is an hour old.
- **Counters** read, add and write back while holding ``flock`` on their sub-directory's lock
  file (and a lock inside the process, since flock emulated over NFS does not keep threads of
  one process apart). Every process on one machine honours flock; across machines it needs an
  NFS mount with working locks (the default; not ``nolock`` or ``local_lock=flock``).
- **Claims** are created with ``os.link`` of a fully written temporary file, which fails if the
  name exists: atomic on every POSIX filesystem and over NFS, without relying on locks, and
  never shows a half-written claim (``open(O_CREAT|O_EXCL)`` followed by a write would, for a
  moment). Taking over a lapsed claim, releasing one and deleting lapsed ones happen under the
  lock, so a holder is only ever replaced by one process.
- **Expiry** is a wall-clock time kept inside each file and checked on every read, so an
  expired result reads as missing on time; :meth:`cleanup` deletes expired files (kq never
  calls it itself: run ``app.backend.cleanup()`` from a periodic task or cron). Machines
  sharing a directory need synchronised clocks (NTP).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import unquote, urlsplit

from kq.config import reject_unknown_options, safe_url
from kq.exceptions import ConfigurationError
from kq.keyvalue import KeyValueBackend, Record

from . import CAPABILITIES

RESULTS, COUNTERS, CLAIMS = "results", "counters", "claims"
#: Kept at the top of the directory: the fan-out every process sharing it must use.
LAYOUT_FILE = ".kq-filesystem"
LOCK_FILE = ".lock"
TEMP_PREFIX = ".tmp-"
#: A temporary file this old was left by a writer that died; :meth:`cleanup` deletes it.
STALE_TEMP_AFTER = 3600.0
#: The longest file name kept readable; longer keys are named by their hash (most filesystems
#: allow 255 bytes).
MAX_NAME = 200
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
_COUNTER_MAGIC = b"kq-counter-1\n"
_CLAIM_MAGIC = b"kq-claim-1\n"
#: Errors of filesystems without hard links (FAT, some FUSE and SMB mounts): claims are then
#: created under the lock instead.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

#: Threads of one process exclude each other with these (striped by lock file path) before
#: taking flock, which keeps processes apart.
_STRIPES = [threading.Lock() for _ in range(64)]


def directory_of(url: str) -> str:
    """The absolute directory named by ``file:///abs/path`` (or ``file://localhost/abs/path``)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        raise ConfigurationError(f"{safe_url(url)} is not a file:// URL")
    if parts.netloc not in ("", "localhost"):
        raise ConfigurationError(
            f"{safe_url(url)} names the host {parts.netloc!r}; a file:// URL names a directory "
            f"of this machine (mount a shared one, e.g. over NFS): file:///abs/path"
        )
    path = unquote(parts.path)
    if not path or not os.path.isabs(path):
        raise ConfigurationError(f"{safe_url(url)} names no absolute directory; write file:///abs/path")
    return os.path.normpath(path)


def file_name(key: str) -> str:
    """The file name of ``key``: distinct keys get distinct names, none starting with a dot."""
    raw = key.encode("utf-8")
    name = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > MAX_NAME:  # '~' is never in an encoded name, so hashes cannot clash with them
        name = "~" + hashlib.sha256(raw).hexdigest()
    return name


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(f"the file:// backend option {name} must be true or false, not {value!r}")


def _read(path: str) -> bytes | None:
    """The file's bytes, or ``None`` if there is none. NFS may answer ESTALE when the file was
    replaced between the look-up and the read; a second look-up finds the new one."""
    for attempt in range(3):
        try:
            with open(path, "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.ESTALE or attempt == 2:
                raise
    return None  # pragma: no cover - the loop returns or raises


class FilesystemBackend(KeyValueBackend):
    """A result backend on a directory: ``file:///abs/path``.

    Options (``result_backend_options``):

    - ``fsync`` (default ``True``): flush each file and its directory to disk before a write
      returns, so a result survives a power cut. ``False`` is several times faster on disks
      with slow flushes, and loses the last results written if the machine crashes.
    - ``fanout`` (default ``1``): levels of sub-directories (0 to 3, 256 per level). One level
      keeps a million results to about 4,000 files per directory; two for hundreds of millions.
      Every process sharing the directory must use the same value (it is recorded there).
    - ``key_prefix`` (default ``""``): put in front of every result's key, so that several apps
      can share one directory.
    """

    capabilities = CAPABILITIES
    #: Local reads take microseconds; threads pay off on network filesystems.
    read_concurrency = 8

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        reject_unknown_options("file:// backend options", self.options, ("fsync", "fanout", "key_prefix"))
        self.fsync = _as_bool("fsync", self.options.get("fsync", True))
        try:
            self.fanout = int(self.options.get("fanout", 1))
        except (TypeError, ValueError):
            self.fanout = -1
        if not 0 <= self.fanout <= 3:
            raise ConfigurationError(
                f"the file:// backend option fanout must be 0, 1, 2 or 3, not {self.options['fanout']!r}"
            )
        self.root = directory_of(url)
        if not os.path.isdir(self.root):
            raise ConfigurationError(
                f"{safe_url(url)}: the directory {self.root} does not exist; create it (on the shared "
                f"mount, if several machines use it) before starting kq"
            )
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise ConfigurationError(f"{safe_url(url)}: this process cannot write in {self.root}")
        self._links = True
        self._check_layout()

    # -- paths --------------------------------------------------------------------------------

    def path(self, namespace: str, key: str) -> str:
        """Where the file of ``key`` in ``namespace`` (``results``, ``counters``, ``claims``) lives."""
        name = file_name(key)
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        levels = [digest[2 * i : 2 * i + 2] for i in range(self.fanout)]
        return os.path.join(self.root, namespace, *levels, name)

    def _check_layout(self) -> None:
        """Record the fan-out in the directory on first use, and refuse a different one later: a
        process with another fan-out would look for every result in the wrong place."""
        layout = f"fanout={self.fanout}\n".encode()
        path = os.path.join(self.root, LAYOUT_FILE)
        found = _read(path)
        if found is None:
            temp = self._temp(self.root, layout)
            try:
                os.link(temp, path)
            except FileExistsError:
                pass
            except OSError as exc:  # no hard links here: a plain create, last one wins
                if exc.errno not in _NO_LINKS:
                    raise
                self._links = False
                os.replace(temp, path)
                temp = ""
            finally:
                if temp:
                    os.unlink(temp)
            found = _read(path)
        if found != layout:
            shown = (found or b"").decode(errors="replace").strip()
            raise ConfigurationError(
                f"{safe_url(self.url)} was laid out with {shown or 'an unknown layout'}; this backend "
                f"has fanout={self.fanout}: every process sharing a directory must use the same fanout"
            )

    # -- files --------------------------------------------------------------------------------

    def _temp(self, directory: str, data: bytes) -> str:
        """Write ``data`` to a new temporary file in ``directory`` (made if missing), flushed
        when ``fsync`` is on; return its path."""
        temp = os.path.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(temp, flags, 0o666)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(temp, flags, 0o666)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return temp

    def _sync_directory(self, directory: str) -> None:
        """Make a rename or link in ``directory`` durable (with ``fsync`` on)."""
        if not self.fsync:
            return
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        except OSError as exc:  # some filesystems cannot sync a directory; the rename is still atomic
            if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
                raise
        finally:
            os.close(fd)

    def _replace(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically: readers see the old file or the new, whole."""
        directory = os.path.dirname(path)
        temp = self._temp(directory, data)
        try:
            os.replace(temp, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        self._sync_directory(directory)

    @contextmanager
    def _locked(self, directory: str) -> Iterator[None]:
        """Hold the lock of ``directory``'s counters and claims: a lock inside this process,
        then ``flock`` on its lock file for every other process."""
        lock_path = os.path.join(directory, LOCK_FILE)
        with _STRIPES[hash(lock_path) % len(_STRIPES)]:
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = os.open(lock_path, flags, 0o666)
            except FileNotFoundError:
                os.makedirs(directory, exist_ok=True)
                fd = os.open(lock_path, flags, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing the only descriptor releases the flock

    # -- results (KeyValueBackend) ------------------------------------------------------------

    def put_record(self, key: str, record: Record) -> None:
        self._replace(self.path(RESULTS, key), record.pack())

    def get_record(self, key: str) -> Record | None:
        data = _read(self.path(RESULTS, key))
        return None if data is None else Record.unpack(data)

    def delete_record(self, key: str) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self.path(RESULTS, key))

    # -- counters -----------------------------------------------------------------------------

    @staticmethod
    def _read_counter(path: str, now: float) -> int:
        """The counter's value, 0 when it is missing, expired or not one of ours."""
        data = _read(path)
        if data is None or not data.startswith(_COUNTER_MAGIC):
            return 0
        try:
            value, expires_at = data[len(_COUNTER_MAGIC) :].split(b"\n")[:2]
            if expires_at and float(expires_at) <= now:
                return 0
            return int(value)
        except ValueError:
            return 0

    def incr(self, key: str, amount: int = 1, expires: float | None = None) -> int:
        path = self.path(COUNTERS, key)
        with self._locked(os.path.dirname(path)):
            now = time.time()
            value = self._read_counter(path, now) + amount
            expiry = b"" if expires is None else repr(now + expires).encode()
            self._replace(path, b"%s%d\n%s\n" % (_COUNTER_MAGIC, value, expiry))
        return value

    def delete_counter(self, key: str) -> None:
        path = self.path(COUNTERS, key)
        with self._locked(os.path.dirname(path)), suppress(FileNotFoundError):
            os.unlink(path)

    # -- claims -------------------------------------------------------------------------------

    @staticmethod
    def _read_claim(path: str) -> tuple[str, float] | None:
        """``(holder, expires_at)`` of the claim at ``path``, ``None`` when there is none. A file
        that is not a whole claim (emptied by a crash with ``fsync`` off) reads as a lapsed claim
        of nobody's, so that the next claim takes it over rather than waiting for it for ever."""
        data = _read(path)
        if data is None:
            return None
        expires_at, _, value = data[len(_CLAIM_MAGIC) :].partition(b"\n")
        try:
            if data.startswith(_CLAIM_MAGIC):
                return value.decode("utf-8"), float(expires_at)
        except ValueError:
            pass
        return "", 0.0

    def claim(self, key: str, value: str, expires: float) -> str | None:
        path = self.path(CLAIMS, key)
        directory = os.path.dirname(path)
        data = b"%s%s\n%s" % (_CLAIM_MAGIC, repr(time.time() + expires).encode(), value.encode("utf-8"))
        temp = self._temp(directory, data)
        try:
            while True:
                if self._links:
                    try:
                        os.link(temp, path)  # atomic: exactly one creator wins the name
                        self._sync_directory(directory)
                        return None
                    except FileExistsError:
                        pass
                    except OSError as exc:
                        if exc.errno not in _NO_LINKS:
                            raise
                        self._links = False
                    held = self._read_claim(path)
                    if held is not None and held[1] > time.time():
                        return held[0]
                with self._locked(directory):  # lapsed, gone, or no hard links: decide under the lock
                    held = self._read_claim(path)
                    if held is not None and held[1] > time.time():
                        return held[0]
                    if held is None and self._links:
                        continue  # released meanwhile: race for the name again
                    os.replace(temp, path)
                    temp = ""
                    self._sync_directory(directory)
                    return None
        finally:
            if temp:
                with suppress(FileNotFoundError):
                    os.unlink(temp)

    def release(self, key: str, value: str) -> None:
        path = self.path(CLAIMS, key)
        with self._locked(os.path.dirname(path)):
            held = self._read_claim(path)
            if held is not None and held[0] == value:
                with suppress(FileNotFoundError):
                    os.unlink(path)

    # -- clean-up -----------------------------------------------------------------------------

    def _files(self, namespace: str) -> Iterator[tuple[str, str]]:
        """``(directory, name)`` of every file under ``namespace``, temporary and lock files too."""
        for directory, _subdirs, names in os.walk(os.path.join(self.root, namespace)):
            for name in names:
                yield directory, name

    def _drop_stale_temp(self, path: str, now: float) -> None:
        with suppress(FileNotFoundError):
            if os.stat(path).st_mtime < now - STALE_TEMP_AFTER:
                os.unlink(path)

    def cleanup(self) -> int:
        """Delete expired results, counters and claims, and temporary files left by writers that
        died; return how many results, counters and claims went. Files this backend did not
        write are left alone. (It walks the files itself rather than through ``scan_records``:
        it deletes by path, and covers counters and claims too.)"""
        now, removed = time.time(), 0
        for directory, name in self._files(RESULTS):
            path = os.path.join(directory, name)
            if name.startswith(TEMP_PREFIX):
                self._drop_stale_temp(path, now)
            elif not name.startswith("."):
                removed += self._drop_expired_result(path, now)
        for namespace in (COUNTERS, CLAIMS):
            for directory, name in self._files(namespace):
                path = os.path.join(directory, name)
                if name.startswith(TEMP_PREFIX):
                    self._drop_stale_temp(path, now)
                    continue
                if name.startswith("."):
                    continue
                with self._locked(directory):
                    if namespace == COUNTERS:
                        data = _read(path)
                        expired = data is not None and self._counter_expired(data, now)
                    else:
                        held = self._read_claim(path)
                        expired = held is not None and held[1] <= now
                    if expired:
                        with suppress(FileNotFoundError):
                            os.unlink(path)
                            removed += 1
        return removed

    @staticmethod
    def _counter_expired(data: bytes, now: float) -> bool:
        if not data.startswith(_COUNTER_MAGIC):
            return False
        try:
            expires_at = data[len(_COUNTER_MAGIC) :].split(b"\n")[1]
            return bool(expires_at) and float(expires_at) <= now
        except (IndexError, ValueError):
            return False

    def _drop_expired_result(self, path: str, now: float) -> int:
        """Delete the result at ``path`` if it expired. A worker may store a fresh result under
        the same name at any moment, so the file is first renamed aside (atomic), checked again
        there, and put back with ``link`` (which never overwrites a newer one) if it was fresh."""
        data = _read(path)
        record = None if data is None else Record.unpack(data)
        if record is None or not record.expired(now):
            return 0
        aside = os.path.join(os.path.dirname(path), f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return 0
        data = _read(aside)
        record = None if data is None else Record.unpack(data)
        if record is not None and not record.expired(now):
            if self._links:
                with suppress(FileExistsError):
                    os.link(aside, path)
                os.unlink(aside)
            elif not os.path.exists(path):  # without hard links, a narrow race remains here
                os.replace(aside, path)
            else:
                os.unlink(aside)
            return 0
        os.unlink(aside)
        return 1
