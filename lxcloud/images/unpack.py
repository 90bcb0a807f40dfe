"""Safe reading and unpacking of root filesystem tarballs (.tar, .tar.gz, .tar.xz, .tar.zst).

Every archive is treated as hostile. One streaming pass both validates and (for `safe_extract`)
writes, so nothing relies on an earlier check: paths with `..`, absolute paths, entries placed
through a symlink, hard links that escape or point at nothing, uid/gid outside 0..65535 and corrupt or
truncated data are refused with `InvalidInput` naming the entry. Symlinks themselves may point
anywhere (`etc/mtab -> /proc/mounts` is normal): they are created, never followed. Device nodes and
fifos are counted and skipped (an unprivileged container cannot use host device nodes anyway).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import lzma
import os
import stat
import tarfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import zstandard

from lxcloud.core.errors import InvalidInput

__all__ = ["ArchiveInfo", "open_archive", "check_archive", "safe_extract", "FORMATS"]

# The least memory an init boots in (a container's whole memory limit, not the init's own use):
# systemd with its journal and logind needs room, busybox init next to none.
SYSTEMD_MIN_MEMORY = 128 * 1024**2
BUSYBOX_MIN_MEMORY = 16 * 1024**2
OTHER_INIT_MIN_MEMORY = 32 * 1024**2

FORMATS = ("tar", "tar.gz", "tar.xz", "tar.zst")
MAX_ID = 65535  # ids must fit the 65536-wide idmap of an unprivileged container

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "tar.gz"),
    (b"\xfd7zXZ\x00", "tar.xz"),
    (b"\x28\xb5\x2f\xfd", "tar.zst"),
)
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"BZh", "bzip2"), (b"PK\x03\x04", "zip"), (b"\x89PNG", "png"), (b"\x7fELF", "ELF"),
    (b"QFI\xfb", "qcow2"),
)
_CHUNK = 1 << 20
# Exceptions that mean "the archive's bytes are bad", as opposed to our own I/O failing.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, zstandard.ZstdError, gzip.BadGzipFile,
)

# Debian architecture names (what debootstrap and the image metadata use), keyed by ELF e_machine.
_ELF_MACHINES: dict[tuple[int, int], str] = {  # (machine, class 1=32/2=64) -> arch
    (0x03, 1): "i386", (0x3E, 2): "amd64", (0xB7, 2): "arm64", (0x28, 1): "armhf",
    (0xF3, 2): "riscv64", (0x15, 2): "ppc64el", (0x16, 2): "s390x", (0x08, 1): "mipsel",
    (0x08, 2): "mips64el", (0x102, 2): "loong64",
}
_ELF_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin")
_OS_RELEASE = ("etc/os-release", "usr/lib/os-release", "lib/os-release")


@dataclass(frozen=True)
class ArchiveInfo:
    """What one full pass over a template archive found.

    format: "tar" | "tar.gz" | "tar.xz" | "tar.zst" (by magic bytes); size and sha256 of the file
    as stored; entries: tar members; os/release from os-release (os "busybox" for a bare busybox
    tree); architecture in Debian naming ("amd64", "i386", "arm64" ...) from an ELF header;
    init/halt_signal guessed from what /sbin/init is, and min_memory (bytes), the least memory
    that init boots in; unpacked_size: bytes of regular files; skipped: device nodes and fifos
    (counted, never created). None means unknown.
    """

    format: str
    size: int
    sha256: str
    entries: int
    os: str | None = None
    release: str | None = None
    architecture: str | None = None
    init: str | None = None
    halt_signal: str | None = None
    min_memory: int | None = None
    unpacked_size: int = 0
    skipped: int = 0

    # `dict(info)` works too, for callers that keep image metadata as a plain dict.
    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def __getitem__(self, key: str) -> object:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)


# ---------------------------------------------------------------------------------------------
# Opening


class _HashingReader:
    """Wraps the raw file: hashes and counts every byte the decompressor pulls."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        b = self._f.read(n)
        self.sha.update(b)
        self.count += len(b)
        return b

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._f.close()


_tar: Any = tarfile  # its header-error classes are not in the public stubs


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile ends an archive silently on a garbage, short or missing header after the first one;
    we want only a real zero block to end it, so truncation and corruption are reported."""

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        try:
            return super().fromtarfile(tf)
        except _tar.EOFHeaderError:
            raise
        except _tar.EmptyHeaderError:
            if tf.offset == 0:
                raise _tar.SubsequentHeaderError("empty archive") from None
            raise _tar.SubsequentHeaderError("archive is truncated (no end-of-archive marker)") from None
        except (_tar.TruncatedHeaderError, _tar.InvalidHeaderError) as e:
            if tf.offset == 0:
                raise _tar.SubsequentHeaderError(f"not a tar archive ({e})") from None
            raise _tar.SubsequentHeaderError(
                f"corrupt or truncated header at offset {tf.offset} ({e})") from None


class _ArchiveTarFile(tarfile.TarFile):
    """A streaming TarFile that also closes the decompressor and raw file it was opened over."""

    _owned: list[Any]
    _hasher: _HashingReader
    _decompressed: IO[bytes]
    archive_format: str

    def close(self) -> None:
        try:
            super().close()
        finally:
            for f in reversed(getattr(self, "_owned", [])):
                try:
                    f.close()
                except Exception:  # noqa: BLE001 - closing must not mask the real error
                    pass
            self._owned = []


def _sniff(head: bytes, path: Path) -> str:
    if not head:
        raise InvalidInput(f"{path.name}: empty file, not a tar archive")
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if len(head) >= 512:
        try:
            tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
            return "tar"
        except _tar.EOFHeaderError:
            raise InvalidInput(f"{path.name}: empty tar archive") from None
        except tarfile.HeaderError:
            pass
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            raise InvalidInput(f"{path.name}: not a tar archive (looks like {what}); "
                               f"supported: {', '.join(FORMATS)}")
    raise InvalidInput(f"{path.name}: not a tar archive (unrecognised content)")


def open_archive(path: Path | str) -> tarfile.TarFile:
    """Open a template archive for ONE forward pass (tarfile stream mode, "r|").

    Compression is detected from magic bytes, never from the name. Raises InvalidInput if the file
    is neither a tar nor a gz/xz/zst-compressed one. Iterate it once; `extractfile(member)` works
    only for the current member. Closing the TarFile closes the file. Reading errors surface as
    tarfile/decompressor exceptions; `check_archive` and `safe_extract` turn them into InvalidInput.
    """
    path = Path(path)
    raw: Any = open(path, "rb", buffering=_CHUNK)  # owned by the returned TarFile
    try:
        fmt = _sniff(raw.peek(512)[:512], path)
        hasher = _HashingReader(raw)
        src: Any = hasher  # a file-like object; the stubs want real IO types
        owned: list[Any] = [raw]
        stream: Any
        if fmt == "tar.gz":
            stream = gzip.GzipFile(fileobj=src, mode="rb")
            owned.append(stream)
        elif fmt == "tar.xz":
            stream = lzma.LZMAFile(src, mode="rb")
            owned.append(stream)
        elif fmt == "tar.zst":
            # A truncated zstd frame reads as a clean EOF here; the strict tar end-marker check
            # catches it (the tar stream then ends early).
            stream = zstandard.ZstdDecompressor().stream_reader(src, read_size=_CHUNK,
                                                                read_across_frames=True)
            owned.append(stream)
        else:
            stream = hasher
        tf = _ArchiveTarFile.open(fileobj=stream, mode="r|", bufsize=_CHUNK,
                                  tarinfo=_StrictTarInfo, errorlevel=2)
        assert isinstance(tf, _ArchiveTarFile)
        tf._owned = owned
        tf._hasher = hasher
        tf._decompressed = stream
        tf.archive_format = fmt
        return tf
    except tarfile.TarError as e:
        raw.close()
        msg = str(e)
        if not msg.startswith(("not a tar", "empty")):
            msg = f"corrupt or truncated archive: {msg}"
        raise InvalidInput(f"{path.name}: {msg}") from None
    except _READ_ERRORS as e:
        raw.close()
        raise InvalidInput(f"{path.name}: corrupt or truncated archive: {e}") from None
    except BaseException:
        raw.close()
        raise


@contextmanager
def _reading(path: Path, where: str = "") -> Iterator[None]:
    """Turn decompressor/tar read errors into InvalidInput (our own write errors pass through)."""
    try:
        yield
    except InvalidInput:
        raise
    except _READ_ERRORS as e:
        at = f" at entry {where!r}" if where else ""
        raise InvalidInput(f"{path.name}: corrupt or truncated archive{at}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Validation (shared by both passes)

_DIR, _FILE, _LINK, _SPECIAL = "d", "f", "l", "s"


def _norm(name: str, what: str, entry: str) -> str:
    """Archive-relative path without "./" or empty parts; refuses absolute and `..` paths."""
    if name.startswith("/"):
        raise InvalidInput(f"refusing entry {entry!r}: absolute {what}")
    if "\x00" in name:
        raise InvalidInput(f"refusing entry {entry!r}: NUL byte in {what}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"refusing entry {entry!r}: '..' in {what}")
    return "/".join(parts)


def _split(rel: str) -> tuple[str, str]:
    i = rel.rfind("/")
    return ("", rel) if i < 0 else (rel[:i], rel[i + 1:])


@dataclass
class _Entry:
    rel: str            # normalized path; "" is the root
    kind: str           # _DIR/_FILE/_LINK/_SPECIAL, or "h" for a hard link
    link: str = ""      # normalized hard-link target
    replaces: bool = False


class _Validator:
    """Tracks what the archive has created so far and refuses anything hostile."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kinds: dict[str, str] = {"": _DIR}
        self.symlinks: dict[str, str] = {}
        self.hardlinks: dict[str, str] = {}
        self.entries = 0
        self.skipped = 0
        self.unpacked = 0
        self.os_release: dict[str, bytes] = {}
        self.arch: str | None = None
        self._ok_dir = ""   # last parent proven to be a real directory (fast path)

    def admit(self, m: tarfile.TarInfo) -> _Entry:
        name = m.name
        rel = _norm(name, "path", name)
        if m.isdir():
            kind = _DIR
        elif m.issym():
            kind = _LINK
        elif m.islnk():
            kind = "h"
        elif m.isreg():
            kind = _FILE
        elif m.ischr() or m.isblk() or m.isfifo():
            kind = _SPECIAL
        else:
            raise InvalidInput(f"refusing entry {name!r}: unsupported tar entry type {m.type!r}")
        if not (0 <= m.uid <= MAX_ID and 0 <= m.gid <= MAX_ID):
            raise InvalidInput(f"refusing entry {name!r}: uid/gid {m.uid}/{m.gid} outside 0..{MAX_ID}")
        if rel == "" and kind != _DIR:
            raise InvalidInput(f"refusing entry {name!r}: the root must be a directory")
        self._check_parents(rel, name)
        entry = _Entry(rel, kind)
        if kind == "h":
            target = _norm(m.linkname, "hard link target", name)
            tkind = self.kinds.get(target)
            if tkind is None:
                raise InvalidInput(f"refusing entry {name!r}: hard link to absent {m.linkname!r}")
            if tkind == _DIR:
                raise InvalidInput(f"refusing entry {name!r}: hard link to directory {m.linkname!r}")
            if target == rel:
                raise InvalidInput(f"refusing entry {name!r}: hard link to itself")
            entry.link = target
        old = self.kinds.get(rel)
        if old is not None and rel != "":
            if old == _DIR and kind == _DIR:
                pass
            elif old == _DIR or kind == _DIR:
                raise InvalidInput(f"refusing entry {name!r}: replaces an earlier entry of another type")
            else:
                entry.replaces = True
                self.symlinks.pop(rel, None)
                self.hardlinks.pop(rel, None)
        # Record. A hard link to a skipped device is itself skipped.
        if kind == "h":
            tkind = self.kinds[entry.link]
            self.kinds[rel] = tkind
            if tkind == _SPECIAL:
                entry.kind = _SPECIAL
            else:
                self.hardlinks[rel] = self.hardlinks.get(entry.link, entry.link)
        else:
            self.kinds[rel] = kind
        if kind == _LINK:
            if not m.linkname:
                raise InvalidInput(f"refusing entry {name!r}: symlink with an empty target")
            self.symlinks[rel] = m.linkname
        elif kind == "h" and entry.link in self.symlinks:
            self.symlinks[rel] = self.symlinks[entry.link]  # a hard link to a symlink is one
        if entry.kind == _SPECIAL:
            self.skipped += 1
        if kind == _FILE:
            self.unpacked += m.size
        self.entries += 1
        return entry

    def _check_parents(self, rel: str, name: str) -> None:
        parent, _ = _split(rel)
        if parent == self._ok_dir or parent == "":
            return
        parts = parent.split("/")
        for i in range(len(parts)):
            p = "/".join(parts[: i + 1])
            k = self.kinds.get(p)
            if k is None:
                self.kinds[p] = _DIR  # implicit directory, created 0755 on extraction
            elif k == _LINK:
                raise InvalidInput(f"refusing entry {name!r}: placed through symlink {p!r}")
            elif k != _DIR:
                raise InvalidInput(f"refusing entry {name!r}: parent {p!r} is not a directory")
        self._ok_dir = parent

    # -- facts about the tree, from a few small files --------------------------------------

    def wants_data(self, e: _Entry) -> int:
        """How many leading bytes of this regular file the fact-finding wants (0: none)."""
        if e.kind != _FILE:
            return 0
        if e.rel in _OS_RELEASE:
            return 64 * 1024
        if self.arch is None and _split(e.rel)[0] in _ELF_DIRS:
            return 64
        return 0

    def observe(self, e: _Entry, head: bytes) -> None:
        if e.rel in _OS_RELEASE:
            self.os_release[e.rel] = head
        elif self.arch is None:
            self.arch = _elf_arch(head)

    def resolve(self, rel: str) -> str | None:
        """Where `rel` leads inside the tree, following the archive's own symlinks (not the host's)."""
        todo = rel.split("/")
        done: list[str] = []
        hops = 0
        while todo:
            p = todo.pop(0)
            if p in ("", "."):
                continue
            if p == "..":
                if done:
                    done.pop()
                continue
            cur = "/".join([*done, p])
            target = self.symlinks.get(cur)
            if target is not None:
                hops += 1
                if hops > 40:
                    return None
                if target.startswith("/"):
                    done = []
                todo = target.split("/") + todo
                continue
            done.append(p)
        final = "/".join(done)
        if final not in self.kinds:
            return None
        return self.hardlinks.get(final, final)

    def info(self, fmt: str, size: int, sha256: str) -> ArchiveInfo:
        os_name = release = None
        for cand in _OS_RELEASE:
            if cand in self.os_release:
                fields = _parse_os_release(self.os_release[cand])
                os_name = fields.get("ID")
                release = fields.get("VERSION_CODENAME") or fields.get("VERSION_ID")
                break
        init = halt = None
        memory = None
        target = self.resolve("sbin/init")
        busybox = self.resolve("bin/busybox")
        if target is not None:
            init = "/sbin/init"
            if target.endswith("systemd/systemd"):
                halt, memory = "SIGRTMIN+3", SYSTEMD_MIN_MEMORY
            elif target.rsplit("/", 1)[-1] == "busybox":
                halt, memory = "SIGUSR1", BUSYBOX_MIN_MEMORY
            else:
                halt, memory = "SIGPWR", OTHER_INIT_MIN_MEMORY  # sysvinit and LXC's default
        if os_name is None and busybox is not None:
            os_name = "busybox"
        return ArchiveInfo(format=fmt, size=size, sha256=sha256, entries=self.entries, os=os_name,
                           release=release, architecture=self.arch, init=init, halt_signal=halt,
                           min_memory=memory, unpacked_size=self.unpacked, skipped=self.skipped)


def _parse_os_release(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value.strip().strip("'\"")
    return out


def _elf_arch(head: bytes) -> str | None:
    if len(head) < 20 or not head.startswith(b"\x7fELF"):
        return None
    cls, data = head[4], head[5]
    machine = int.from_bytes(head[18:20], "little" if data == 1 else "big")
    arch = _ELF_MACHINES.get((machine, cls))
    if arch == "ppc64el" and data != 1:
        arch = "ppc64"
    return arch


# ---------------------------------------------------------------------------------------------
# The pass


def _run_pass(path: Path, sink: Callable[[tarfile.TarFile, tarfile.TarInfo, _Entry, _Validator], None]
              | None, progress: Callable[[int, int], None] | None = None) -> ArchiveInfo:
    path = Path(path)
    try:
        total = path.stat().st_size
    except OSError as e:
        raise InvalidInput(f"cannot read archive {path}: {e.strerror}") from None
    tf = open_archive(path)
    assert isinstance(tf, _ArchiveTarFile)
    v = _Validator(path)
    step = max(total // 100, _CHUNK)
    last = 0
    try:
        it = iter(tf)
        name = ""
        while True:
            with _reading(path, f"after {name}" if name else ""):
                m = next(it, None)
            if m is None:
                break
            name = m.name
            ent = v.admit(m)
            if sink is not None:
                sink(tf, m, ent, v)
            elif (want := v.wants_data(ent)) and m.size:
                with _reading(path, name):
                    f = tf.extractfile(m)
                    assert f is not None
                    v.observe(ent, f.read(want))
            if progress is not None and tf._hasher.count - last >= step:
                last = tf._hasher.count
                progress(last, total)
        if v.entries == 0:
            raise InvalidInput(f"{path.name}: archive has no entries")
        # Drain: lets gzip/xz verify their trailing checksums, and hashes every byte of the file.
        with _reading(path, "end of archive"):
            while tf._decompressed.read(_CHUNK):
                pass
            while tf._hasher.read(_CHUNK):
                pass
        if progress is not None:
            progress(total, total)
        return v.info(tf.archive_format, tf._hasher.count, tf._hasher.sha.hexdigest())
    finally:
        tf.close()


def check_archive(path: Path | str) -> ArchiveInfo:
    """Validate a template archive in one full streaming pass and describe it.

    Raises InvalidInput (message names the offending entry) for: not a tar (or gz/xz/zst tar),
    corrupt or truncated data, absolute paths or `..` components, an entry placed through a
    symlink entry, a hard link whose target escapes or was not archived before it, uid/gid outside
    0..65535, unsupported entry types. Symlinks pointing anywhere are fine (never followed).
    """
    return _run_pass(Path(path), None)


# ---------------------------------------------------------------------------------------------
# Extraction

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _Writer:
    """Creates entries under a root directory fd, never following a symlink on the way."""

    _MAX_FDS = 64

    def __init__(self, root_fd: int, uid_shift: int, gid_shift: int) -> None:
        self.root_fd = root_fd
        self.uid_shift = uid_shift
        self.gid_shift = gid_shift
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._dirs: list[tuple[str, int, int, int, int]] = []  # rel, uid, gid, mode, mtime

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def dirfd(self, rel: str) -> int:
        """fd of directory `rel`, creating missing (implicit) directories; O_NOFOLLOW throughout."""
        if rel == "":
            return self.root_fd
        fd = self._fds.get(rel)
        if fd is not None:
            self._fds.move_to_end(rel)
            return fd
        parent, base = _split(rel)
        pfd = self.dirfd(parent)
        try:
            fd = os.open(base, _O_DIR, dir_fd=pfd)
        except FileNotFoundError:
            os.mkdir(base, 0o755, dir_fd=pfd)
            fd = os.open(base, _O_DIR, dir_fd=pfd)
            os.fchown(fd, self.uid_shift, self.gid_shift)
        self._fds[rel] = fd
        if len(self._fds) > self._MAX_FDS:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def write(self, path: Path, tf: tarfile.TarFile, m: tarfile.TarInfo, e: _Entry, v: _Validator) -> None:
        uid, gid = m.uid + self.uid_shift, m.gid + self.gid_shift
        mtime_ns = int(m.mtime * 1_000_000_000)  # pax mtimes may be fractional
        if e.kind == _SPECIAL:
            self.dirfd(_split(e.rel)[0])  # its implicit parents still exist (e.g. /dev)
            return
        if e.kind == _DIR:
            if e.rel:
                parent, base = _split(e.rel)
                try:
                    os.mkdir(base, 0o700, dir_fd=self.dirfd(parent))
                except FileExistsError:
                    pass  # implicit earlier, or a repeated entry; opened with O_NOFOLLOW below
            # Modes and mtimes of directories are set at the end: files created inside would
            # bump the mtime again.
            self._dirs.append((e.rel, uid, gid, stat.S_IMODE(m.mode), mtime_ns))
            return
        parent, base = _split(e.rel)
        pfd = self.dirfd(parent)
        if e.replaces:
            try:
                os.unlink(base, dir_fd=pfd)
            except FileNotFoundError:
                pass  # it was a skipped device node
        if e.kind == _FILE:
            fd = os.open(base, _O_NEW, 0o600, dir_fd=pfd)
            try:
                want = v.wants_data(e)
                if m.size:
                    with _reading(path, m.name):
                        src = tf.extractfile(m)
                        assert src is not None
                    first = True
                    while True:
                        with _reading(path, m.name):
                            buf = src.read(_CHUNK)
                        if not buf:
                            break
                        if first and want:
                            v.observe(e, buf[:want])
                        first = False
                        view = memoryview(buf)
                        while view:
                            view = view[os.write(fd, view):]
                # chown before chmod: chown clears setuid/setgid bits.
                os.fchown(fd, uid, gid)
                os.fchmod(fd, stat.S_IMODE(m.mode))
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
        elif e.kind == _LINK:
            os.symlink(m.linkname, base, dir_fd=pfd)
            os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
        elif e.kind == "h":
            tparent, tbase = _split(e.link)
            tfd = os.dup(self.dirfd(tparent))  # dup: looking up pfd may evict it from the cache
            try:
                os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=self.dirfd(parent),
                        follow_symlinks=False)
            finally:
                os.close(tfd)

    def finish_dirs(self) -> None:
        # Deepest first, so setting a parent's mtime is the last touch it gets.
        for rel, uid, gid, mode, mtime_ns in sorted(self._dirs, key=lambda d: -d[0].count("/")):
            fd = self.dirfd(rel)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))


def safe_extract(path: Path | str, dest: Path | str, *, uid_shift: int = 0, gid_shift: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> ArchiveInfo:
    """Extract a template archive into the EMPTY directory `dest` (created if missing).

    Runs the same checks as `check_archive` while extracting (a prior check is not trusted).
    Never follows a symlink when creating anything (dir fds + O_NOFOLLOW). Every entry is owned by
    uid+uid_shift / gid+gid_shift (lchown), modes incl. setuid/setgid and mtimes are kept, hard
    links are recreated, device nodes and fifos are skipped. `progress(done_bytes, total_bytes)`
    is called as the (compressed) file is consumed. On failure it raises (InvalidInput for a bad
    archive) and leaves a partial tree: the caller removes `dest`.
    """
    path, dest = Path(path), Path(dest)
    if uid_shift < 0 or gid_shift < 0:
        raise InvalidInput("uid_shift and gid_shift must be >= 0")
    dest.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(dest, _O_DIR)
    writer = _Writer(root_fd, uid_shift, gid_shift)
    try:
        with os.scandir(root_fd) as it:
            if any(True for _ in it):
                raise InvalidInput(f"extraction target {dest} is not empty")
        # Defaults for the root in case the archive has no "./" entry: a container's / must be
        # owned by its (mapped) root and traversable.
        os.fchown(root_fd, uid_shift, gid_shift)
        os.fchmod(root_fd, 0o755)

        def sink(tf: tarfile.TarFile, m: tarfile.TarInfo, e: _Entry, v: _Validator) -> None:
            writer.write(path, tf, m, e, v)

        info = _run_pass(path, sink, progress)
        writer.finish_dirs()
        return info
    finally:
        writer.close()
        os.close(root_fd)
