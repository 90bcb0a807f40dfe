"""What makes a machine itself, removed from a clone's new root so that its init makes it anew.

A root is a plain directory or an overlay upper dir over a read-only lower. In an upper, a file
that comes from the lower is deleted by a whiteout (a 0:0 character device of the same name) and
changed by a copy in the upper; a directory marked opaque (trusted./user.overlay.opaque = y) or a
whiteout hides the lower's entries below it. The clone is not running: nothing races these steps,
but its contents belong to the tenant, so no symlink in it is ever followed.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from pathlib import Path

from lxcloud.core.errors import InvalidInput
from lxcloud.drivers.compute.base import RootfsSpec

EMPTIED = ("etc/machine-id",)             # emptied, not removed: systemd then makes a new one
REMOVED = ("var/lib/dbus/machine-id",)
REMOVED_GLOBS = (("etc/ssh", "ssh_host_*"),)
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _is_whiteout(st: os.stat_result | None) -> bool:
    return st is not None and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


class _Root:
    """One root as its instance will see it: `upper` alone (a dir root) or over `lower`."""

    def __init__(self, upper: Path, lower: Path | None) -> None:
        self.upper, self.lower = upper, lower

    def _upper_dir(self, parts: list[str]) -> bool:
        """Whether every one of `parts` is a real directory in the upper (no symlink)."""
        p = self.upper
        for part in parts:
            p = p / part
            st = _lstat(p)
            if st is None or not stat.S_ISDIR(st.st_mode):
                return False
        return True

    def _shows(self, parts: list[str]) -> bool:
        """Whether the lower's directory at `parts` shows through the upper: the lower has it
        under real directories, and no whiteout, file or opaque directory in the upper hides it."""
        if self.lower is None:
            return False
        up, low = self.upper, self.lower
        for part in parts:
            up, low = up / part, low / part
            lst = _lstat(low)
            if lst is None or not stat.S_ISDIR(lst.st_mode):
                return False
            ust = _lstat(up)
            if ust is not None and (not stat.S_ISDIR(ust.st_mode) or _is_opaque(up)):
                return False
        return True

    def _lower_has(self, parts: list[str]) -> bool:
        """Whether the lower has an entry at `parts` in a directory that shows through."""
        return (self.lower is not None and self._shows(parts[:-1])
                and _lstat(self.lower.joinpath(*parts)) is not None)

    def _upper_entry(self, parts: list[str]) -> os.stat_result | None:
        """The upper's own entry at `parts` (a whiteout too), under real directories."""
        if not self._upper_dir(parts[:-1]):
            return None
        return _lstat(self.upper.joinpath(*parts))

    def _make_upper_parents(self, parts: list[str]) -> Path:
        """The upper's directory for `parts[:-1]`, made where missing like its lower twin."""
        p, low = self.upper, self.lower
        for part in parts[:-1]:
            p = p / part
            low = low / part if low is not None else None
            if _lstat(p) is None:
                twin = _lstat(low) if low is not None else None
                if twin is None or not stat.S_ISDIR(twin.st_mode):
                    raise InvalidInput(f"{p} has no directory to mirror in the lower")
                p.mkdir(stat.S_IMODE(twin.st_mode))
                os.chown(p, twin.st_uid, twin.st_gid)
                os.chmod(p, stat.S_IMODE(twin.st_mode))
        return p

    def names(self, rel: str, pattern: str) -> list[str]:
        """Entries of directory `rel` matching `pattern`, in the upper or the lower (some may be
        whited out: remove() tells)."""
        parts = rel.split("/")
        found: set[str] = set()
        if self._upper_dir(parts):
            found |= set(fnmatch.filter(os.listdir(self.upper.joinpath(*parts)), pattern))
        if self.lower is not None and self._shows(parts):
            found |= set(fnmatch.filter(os.listdir(self.lower.joinpath(*parts)), pattern))
        return sorted(found)

    def remove(self, rel: str) -> None:
        """The file at `rel` gone (a whiteout over the lower's). Missing or a directory: kept."""
        parts = rel.split("/")
        mine = self._upper_entry(parts)
        if _is_whiteout(mine) or (mine is not None and stat.S_ISDIR(mine.st_mode)):
            return
        below = self._lower_has(parts)
        if mine is not None:
            self.upper.joinpath(*parts).unlink()
        if below:
            parent = self._make_upper_parents(parts)
            os.mknod(parent / parts[-1], stat.S_IFCHR | 0o000, os.makedev(0, 0))
            owner = parent.lstat()
            os.chown(parent / parts[-1], owner.st_uid, owner.st_gid, follow_symlinks=False)

    def empty(self, rel: str) -> None:
        """The file at `rel` emptied, its mode and owner kept (a copy in the upper over the
        lower's; a symlink replaced by an empty file). Missing: kept missing."""
        parts = rel.split("/")
        mine = self._upper_entry(parts)
        if _is_whiteout(mine) or (mine is not None and stat.S_ISDIR(mine.st_mode)):
            return
        if mine is None:
            if self.lower is None or not self._lower_has(parts):
                return
            model = self.lower.joinpath(*parts).lstat()
        else:
            model = mine
        parent = self._make_upper_parents(parts)
        path = parent / parts[-1]
        if stat.S_ISREG(model.st_mode):
            mode, uid, gid = stat.S_IMODE(model.st_mode), model.st_uid, model.st_gid
        else:                      # a link (or odd file): an ordinary 0444 file of the root's owner
            owner = self.upper.lstat()
            mode, uid, gid = 0o444, owner.st_uid, owner.st_gid
        if mine is not None:
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def forget_identity(root: RootfsSpec) -> None:
    """/etc/machine-id emptied, /var/lib/dbus/machine-id and /etc/ssh/ssh_host_* removed, in
    the root as its instance will see it (InvalidInput for a root kind it does not know)."""
    if root.kind == "overlay":
        if root.lower is None:
            raise InvalidInput("an overlay root needs a lower dir")
        tree = _Root(root.path, root.lower)
    elif root.kind == "dir":
        tree = _Root(root.path, None)
    else:
        raise InvalidInput(f"root kind {root.kind!r} is not supported")
    for rel in EMPTIED:
        tree.empty(rel)
    for rel in REMOVED:
        tree.remove(rel)
    for rel, pattern in REMOVED_GLOBS:
        for name in tree.names(rel, pattern):
            tree.remove(f"{rel}/{name}")
