"""Loop-backed filesystems for pools: a sparse file, formatted once, mounted through a loop device.

`mount -o loop` attaches the loop device with autoclear: unmounting detaches it, so a torn-down
pool leaves no loop device behind. The file lives beside the mount point (`<path>.img`), never
inside it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from lxcloud.core.errors import DriverError
from lxcloud.core.proc import run


def image_of(mountpoint: Path) -> Path:
    """The file behind a loop-backed pool mounted at `mountpoint`."""
    return mountpoint.with_name(mountpoint.name + ".img")


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def mount_of(path: Path) -> tuple[str, str, str] | None:
    """(fstype, source, super options) of the filesystem mounted exactly at `path`, None when
    nothing is mounted there."""
    want = str(Path(path).resolve())
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts, rest = left.split(), right.split()
            if len(parts) >= 5 and _unescape(parts[4]) == want and len(rest) >= 3:
                found = (rest[0], _unescape(rest[1]), rest[2])   # the last one mounted wins
    return found


def is_mounted(path: Path) -> bool:
    return mount_of(path) is not None


def mounts_under(path: Path) -> list[Path]:
    """Mount points strictly below `path`, deepest first (to be unmounted in that order)."""
    prefix = str(Path(path).resolve()).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = {_unescape(line.split()[4]) for line in f}
    return [Path(p) for p in sorted((p for p in points if p.startswith(prefix)), key=len,
                                    reverse=True)]


def ensure_loop_fs(mountpoint: Path, size: int, mkfs: Sequence[str], options: str = "") -> None:
    """A filesystem of `size` bytes in `image_of(mountpoint)`, made with `mkfs + [file]` the
    first time (its type is mkfs's suffix: mkfs.xfs, mkfs.btrfs), mounted at `mountpoint` (with
    `options`) through a direct-I/O loop device. Idempotent; a failed first format
    leaves no file behind."""
    mountpoint = Path(mountpoint)
    if is_mounted(mountpoint):
        make_shared(mountpoint)
        return
    image = image_of(mountpoint)
    mountpoint.mkdir(parents=True, exist_ok=True)
    if not image.exists():
        tmp = image.with_name(image.name + ".new")
        try:
            with open(tmp, "wb") as f:
                f.truncate(size)          # sparse: the host's disk is used as data is written
            run([*mkfs, str(tmp)], timeout=120)
            os.replace(tmp, image)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    # our own loop device (direct I/O, autoclear), not `mount -o loop`: util-linux's is
    # buffered, so every block went through the page cache twice (the pool's file and the
    # filesystem in it), and a limited disk's own loop device on top wrote at a fifth of the
    # pool's speed
    mount_image(image, mountpoint, mkfs[0].rsplit(".", 1)[-1], options=options)
    make_shared(mountpoint)


def make_shared(mountpoint: Path) -> None:
    """Make a mount shared, so that what is unmounted below it is also unmounted in the copies a
    new mount namespace took (`ip netns exec`, a service with a private /tmp) where / is private:
    otherwise such a copy keeps a stopped instance's root busy and its delete fails."""
    if _libc.mount(None, os.fsencode(str(mountpoint)), None, ctypes.c_ulong(_MS_SHARED),
                   None) != 0:
        err = ctypes.get_errno()
        raise DriverError(f"cannot make {mountpoint} a shared mount: {os.strerror(err)}",
                          errno=err)


def teardown_loop_fs(mountpoint: Path) -> None:
    """Unmount (detaching the loop device) and remove the file and the mount point. Missing
    pieces are skipped; DriverError when the filesystem is still busy."""
    mountpoint = Path(mountpoint)
    if is_mounted(mountpoint):
        try:
            run(["umount", str(mountpoint)], timeout=60)
        except DriverError as e:
            raise DriverError(f"cannot unmount the pool at {mountpoint}: {e}") from e
    image_of(mountpoint).unlink(missing_ok=True)
    remove_dir(mountpoint, f"the pool's mount point {mountpoint}")


def remove_dir(path: Path, what: str) -> None:
    """rmdir `path` (missing: no-op); DriverError naming `what` when it is not empty."""
    try:
        Path(path).rmdir()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise DriverError(f"cannot remove {what}: {e}") from e


@contextmanager
def mounted_on_scratch(parent: Path, mount: Callable[[Path], object]) -> Iterator[Path]:
    """A new directory under `parent` with `mount(it)` done on it, for as long as the context
    lasts; unmounted and removed on exit (removed also when the mount fails)."""
    parent.mkdir(mode=0o711, exist_ok=True)
    mp = Path(tempfile.mkdtemp(prefix="mnt-", dir=parent))
    try:
        mount(mp)
        try:
            yield mp
        finally:
            umount(mp)
    finally:
        mp.rmdir()


# --- loop devices and mounts without a subprocess (LOOP_CONFIGURE + mount(2): ~2 ms, against
# ~6 ms for `mount -o loop`, which spawns mount and losetup's logic)

_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LOOP_SET_CAPACITY = 0x4C07
_LO_FLAGS_READ_ONLY = 1
_LO_FLAGS_AUTOCLEAR = 4
_LO_FLAGS_DIRECT_IO = 16
_MS_RDONLY = 1
_MS_SHARED = 1 << 20
_FICLONE = 0x40049409
_FIFREEZE = 0xC0045877
_FITHAW = 0xC0045878

_libc = ctypes.CDLL(None, use_errno=True)


def _loop_config(fd: int, path: Path, readonly: bool) -> bytes:
    # struct loop_config { u32 fd; u32 block_size; struct loop_info64 info; u64 reserved[8]; }
    # with loop_info64 { u64 device, inode, rdevice, offset, sizelimit; u32 number,
    # encrypt_type, encrypt_key_size, flags; u8 file_name[64], crypt_name[64],
    # encrypt_key[32]; u64 init[2]; }
    # Direct I/O: the loop writes into the pool's file without a second page cache of its own.
    flags = _LO_FLAGS_AUTOCLEAR | _LO_FLAGS_DIRECT_IO | (_LO_FLAGS_READ_ONLY if readonly else 0)
    info = struct.pack("=QQQQQIIII64s64s32sQQ", 0, 0, 0, 0, 0, 0, 0, 0, flags,
                       os.fsencode(str(path))[-63:], b"", b"", 0, 0)
    return struct.pack("=II", fd, 0) + info + bytes(64)


def _attach(image: Path, readonly: bool) -> tuple[str, int]:
    """A free loop device bound to `image` with autoclear: (its /dev path, an open fd on it).
    Closing the fd while nothing mounts it detaches it again."""
    fd = os.open(image, os.O_RDONLY if readonly else os.O_RDWR)
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR)
        try:
            for _ in range(64):
                n = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)
                dev = f"/dev/loop{n}"
                lfd = os.open(dev, os.O_RDWR)
                try:
                    fcntl.ioctl(lfd, _LOOP_CONFIGURE, _loop_config(fd, image, readonly))
                    return dev, lfd
                except OSError as e:
                    os.close(lfd)
                    if e.errno != errno.EBUSY:   # EBUSY: another caller took it meanwhile
                        raise
            raise DriverError(f"no free loop device for {image}")
        finally:
            os.close(ctl)
    except OSError as e:
        raise DriverError(f"cannot attach {image} to a loop device: {e.strerror}") from e
    finally:
        os.close(fd)


def mount_fs(source: str, target: Path, fstype: str, *, readonly: bool = False,
             options: str = "") -> None:
    """mount(2) `source` (a device, or "overlay") at `target`; DriverError naming the errno."""
    flags = _MS_RDONLY if readonly else 0
    if _libc.mount(source.encode(), os.fsencode(str(target)), fstype.encode(),
                   ctypes.c_ulong(flags), options.encode() or None) != 0:
        err = ctypes.get_errno()
        raise DriverError(f"cannot mount {source} ({fstype}) at {target}: {os.strerror(err)}",
                          errno=err)


def mount_image(image: Path, mountpoint: Path, fstype: str = "ext4", *, readonly: bool = False,
                options: str = "") -> str:
    """Mount the filesystem in the file `image` at `mountpoint` through a new loop device with
    autoclear (unmounting detaches it); returns the device. On failure nothing stays attached."""
    dev, lfd = _attach(Path(image), readonly)
    try:
        mount_fs(dev, Path(mountpoint), fstype, readonly=readonly, options=options)
    finally:
        os.close(lfd)    # the mount holds the device now; without one, autoclear detaches it
    return dev


def remount_device(dev: str, mountpoint: Path, fstype: str = "ext4", options: str = "") -> None:
    """Mount an already attached loop device again: the kernel hands back the superblock that is
    still alive elsewhere (never a second one over the same file)."""
    mount_fs(dev, Path(mountpoint), fstype, options=options)


def umount(mountpoint: Path, *, lazy: bool = False) -> None:
    """Unmount `mountpoint` (MNT_DETACH if `lazy`); not mounted: no-op; DriverError if busy."""
    if _libc.umount2(os.fsencode(str(mountpoint)), 2 if lazy else 0) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL and not is_mounted(Path(mountpoint)):
            return
        if err == errno.ENOENT:
            return
        raise DriverError(f"cannot unmount {mountpoint}: {os.strerror(err)}", errno=err)


def refresh_capacity(dev: str) -> None:
    """The loop device `dev` takes its file's new size (after the file grew)."""
    fd = os.open(dev, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, _LOOP_SET_CAPACITY, 0)
    except OSError as e:
        raise DriverError(f"cannot resize {dev}: {e.strerror}") from e
    finally:
        os.close(fd)


def backing_file(dev: str) -> Path | None:
    """The file a loop device (/dev/loopN) is bound to, None when it is free."""
    try:
        text = Path(f"/sys/block/{Path(dev).name}/loop/backing_file").read_text().strip()
    except OSError:
        return None
    return Path(text.removesuffix(" (deleted)")) if text else None


def loop_users(image: Path) -> list[str]:
    """The loop devices bound to the file `image` (by its resolved path, as the kernel keeps
    it: the pool never renames a file while it is attached)."""
    want = os.path.realpath(image)
    found = []
    for d in sorted(Path("/sys/block").glob("loop*")):
        try:
            text = (d / "loop/backing_file").read_text().strip()
        except OSError:
            continue
        if text == want:
            found.append(f"/dev/{d.name}")
    return found


def reflink(src: Path, dst: Path) -> bool:
    """Make `dst` a copy-on-write clone of the file `src` (FICLONE: no data copied); False, with
    no `dst` left, when the filesystem cannot share blocks."""
    try:
        with open(src, "rb") as s, open(dst, "xb") as d:
            try:
                fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
            except OSError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL):
                    os.unlink(dst)
                    return False
                raise
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise
    return True


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy the file `src` to the new `dst` keeping its holes (only the data ranges are read)."""
    try:
        with open(src, "rb") as s, open(dst, "xb") as d:
            size = os.fstat(s.fileno()).st_size
            pos = 0
            while pos < size:
                try:
                    start = os.lseek(s.fileno(), pos, os.SEEK_DATA)
                except OSError as e:
                    if e.errno == errno.ENXIO:    # only a hole is left
                        break
                    raise
                end = os.lseek(s.fileno(), start, os.SEEK_HOLE)
                while start < end:
                    n = os.copy_file_range(s.fileno(), d.fileno(), end - start, start, start)
                    if n == 0:
                        break
                    start += n
                pos = end
            d.truncate(size)
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise


def clone_file(src: Path, dst: Path) -> bool:
    """`dst` becomes a copy of `src`: a reflink where the filesystem shares blocks (True), else a
    sparse copy (False)."""
    if reflink(src, dst):
        return True
    sparse_copy(src, dst)
    return False


def supports_reflink(directory: Path) -> bool:
    """Whether files in `directory` can be cloned without copying (FICLONE), tried on a probe."""
    probe = Path(directory) / f".reflink-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        probe.write_bytes(b"probe")
        return reflink(probe, probe.with_name(probe.name + ".clone"))
    finally:
        probe.unlink(missing_ok=True)
        probe.with_name(probe.name + ".clone").unlink(missing_ok=True)


@contextmanager
def frozen(mountpoint: Path) -> Iterator[None]:
    """The filesystem mounted at `mountpoint` frozen (FIFREEZE: every write flushed and held)
    for as long as the context lasts, thawed on exit whatever happens."""
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.ioctl(fd, _FIFREEZE, 0)
        except OSError as e:
            raise DriverError(f"cannot freeze the filesystem at {mountpoint}: {e.strerror}") from e
        try:
            yield
        finally:
            fcntl.ioctl(fd, _FITHAW, 0)
    finally:
        os.close(fd)


def filesystem_of(path: Path) -> tuple[Path, str, str]:
    """(mount point, fstype, super options) of the filesystem holding `path`."""
    dev = os.stat(path).st_dev
    want = f"{os.major(dev)}:{os.minor(dev)}"
    resolved = str(Path(path).resolve())
    best: tuple[Path, str, str] | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts, rest = left.split(), right.split()
            if len(parts) < 5 or len(rest) < 3 or parts[2] != want:
                continue
            mp = _unescape(parts[4])
            if resolved == mp or resolved.startswith(mp.rstrip("/") + "/"):
                if best is None or len(mp) >= len(str(best[0])):
                    best = (Path(mp), rest[0], rest[2])
    if best is None:
        raise DriverError(f"no mounted filesystem holds {path}")
    return best


def mount_users(directory: Path) -> list[int]:
    """A process (its pid) in each other mount namespace where `directory` is in use: mounted
    (bind-mounted: a volume) or the upper dir of an overlay (a running instance's root).
    Empty when none is."""
    directory = Path(directory).resolve()
    st = os.stat(directory)
    fs_mp = filesystem_of(directory)[0]
    rel = "/" + str(directory.relative_to(fs_mp)) if directory != fs_mp else "/"
    rel = rel.rstrip("/") or "/"
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    upper = f"upperdir={directory}/"
    seen = {os.readlink("/proc/self/ns/mnt")}
    users = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns in seen:
                continue
            seen.add(ns)
            with open(f"/proc/{pid}/mountinfo") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            left, _, right = line.partition(" - ")
            parts, rest = left.split(), right.split()
            if len(parts) < 5 or len(rest) < 3:
                continue
            root = _unescape(parts[3])
            if (parts[2] == dev and (root == rel or root.startswith(rel.rstrip("/") + "/"))) \
                    or upper in rest[2] + "," or f"upperdir={directory}," in rest[2] + ",":
                users.append(int(pid))
                break
    return users
