"""Loop-backed filesystems for pools: a sparse file, formatted once, mounted through a loop device.

`mount -o loop` attaches the loop device with autoclear: unmounting detaches it, so a torn-down
pool leaves no loop device behind. The file lives beside the mount point (`<path>.img`), never
inside it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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


def ensure_loop_fs(mountpoint: Path, size: int, mkfs: Sequence[str], options: str = "") -> None:
    """A filesystem of `size` bytes in `image_of(mountpoint)`, made with `mkfs + [file]` the
    first time, mounted at `mountpoint` (with `options`). Idempotent; a failed first format
    leaves no file behind."""
    mountpoint = Path(mountpoint)
    if is_mounted(mountpoint):
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
    opts = ",".join(o for o in ("loop", options) if o)
    run(["mount", "-o", opts, str(image), str(mountpoint)], timeout=60)


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
    try:
        mountpoint.rmdir()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise DriverError(f"the pool's mount point {mountpoint} is not empty: {e}") from e
