"""A tree packed as a template archive: what an image made from an instance (or an export) is.

The tree is a root filesystem as a host holds it (owned by the instance's mapped ids); the archive
holds it as an image does, with the ids unshifted (host uid 1000000 is root again), so that
`images.unpack.safe_extract` reads it back with any id map. Device nodes and sockets are left
out (a container's /dev is made at start), as the unpacker would skip them anyway.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

from lxcloud.core.errors import InvalidInput

Progress = Callable[[int, int], None]


def tree_bytes(root: Path) -> int:
    """Apparent bytes of the regular files under `root` (what packing it reads)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for n in files:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def pack_tree(root: Path, dest: Path, *, uid_shift: int, gid_shift: int, count: int = 65536,
              progress: Progress | None = None) -> int:
    """Write `root` to the tar file `dest` (uncompressed: zstd costs more than it saves on the
    way to a local template library), ids shifted down by uid_shift/gid_shift (an id outside
    the map becomes 0). Returns the archive's size. On failure `dest` is removed."""
    root, dest = Path(root), Path(dest)
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory")
    total = tree_bytes(root)
    done = 0

    def unshift(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        nonlocal done
        if ti.ischr() or ti.isblk() or ti.isfifo():
            return None
        ti.uid = ti.uid - uid_shift if uid_shift <= ti.uid < uid_shift + count else 0
        ti.gid = ti.gid - gid_shift if gid_shift <= ti.gid < gid_shift + count else 0
        ti.uname = ti.gname = ""
        if ti.isfile():
            done += ti.size
            if progress is not None:
                progress(done, total)
        return ti

    try:
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
            # sorted, top-down, never following a symlink: the archive says what the tree holds
            for dirpath, dirs, files in os.walk(root):
                dirs.sort()
                rel = os.path.relpath(dirpath, root)
                if rel == ".":
                    tf.add(dirpath, arcname=".", recursive=False, filter=unshift)
                for n in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
                    path = os.path.join(dirpath, n)
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        continue
                    tf.add(path, arcname=os.path.normpath(os.path.join(rel, n)), recursive=False,
                           filter=unshift)
                for d in dirs:
                    path = os.path.join(dirpath, d)
                    if not os.path.islink(path):
                        tf.add(path, arcname=os.path.normpath(os.path.join(rel, d)),
                               recursive=False, filter=unshift)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest.stat().st_size
