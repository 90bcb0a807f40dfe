"""How the dir pool limits an area (an instance root's directory, a volume's directory) to a size.

An area is a directory of the pool. Three backends, one chosen per pool when it is made real:

  "project"  the pool's filesystem is mounted with project quotas (XFS prjquota, ext4 with the
             project feature): each area is a plain directory tagged with its own project id,
             limited with `xfs_quota`; ids are allocated per pool under a lock, freed on delete.
  "image"    each limited area is its own sparse ext4 file `<area>.img` beside the directory,
             sized to the limit and mounted on it through a loop device. Writing past it fails
             with ENOSPC, and `df` inside an instance shows it (overlayfs reports its upper's
             filesystem). Areas without a limit (size 0) are plain directories.
  "none"     plain directories; limits cannot be enforced (quota False, and the note says why).

The backends share the plain-directory operations (`DirAreas`); a snapshot of an area is a
directory `<snap>/` (a `cp -a --reflink=auto` copy: ownership, xattrs and overlay whiteouts kept)
or, for an image area, a clone of its file `<snap>.img` taken while the filesystem is frozen.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from lxcloud.core.errors import DriverError, InUse, InvalidInput, NotFound, Unsupported
from lxcloud.core.proc import run
from lxcloud.core.reverter import Reverter
from lxcloud.core.waiting import wait_until
from lxcloud.drivers.storage import loop
from lxcloud.drivers.storage.base import walk_usage

MiB = 1 << 20
MIN_IMAGE_SIZE = 16 * MiB          # below this an ext4 with a journal has no room to speak of
BLOCK = 4096
# No blocks reserved for root (the container's root is not root on the host: it would hit ENOSPC
# early and `df` would show less than the limit); lazy init so formatting writes almost nothing.
EXT4_MKFS = ("mkfs.ext4", "-q", "-F", "-m", "0", "-b", str(BLOCK), "-I", "256", "-i", "16384")
EXT4_EXTENDED = "lazy_itable_init=1,lazy_journal_init=1,nodiscard"
# noinit_itable: no background thread zeroing inode tables (they would fill the sparse file);
# discard: what is deleted inside is given back to the pool (holes punched in the file).
EXT4_OPTIONS = "noinit_itable,discard"
RUN_NOTE_NO_XFS_QUOTA = "this kernel has no XFS quota support"



@dataclass(frozen=True)
class Owner:
    """Who owns an area's top directory (and, for a root, its upper/work dirs): the mapped ids."""

    uid: int
    gid: int


CAP_SYS_RESOURCE = 24


def has_capability(cap: int) -> bool:
    """Whether this process holds the capability `cap` (its effective set)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def image_file(area: Path) -> Path:
    return area.with_name(area.name + ".img")


def copy_image(src: Path, dst: Path) -> None:
    """The new file `dst` holds the ext4 image `src` (unmounted, or frozen): a reflink where the
    filesystem shares blocks, else only the blocks its ext4 uses (`e2image -ra`, reading the
    block bitmaps): a sparse copy would read the whole file where the filesystem cannot report
    holes (ceph-fuse), so a restore would cost the disk's size rather than what it holds."""
    if loop.reflink(src, dst):
        return
    try:
        run(["e2image", "-raf", str(src), str(dst)], timeout=3600)   # -f: a frozen mount
        os.truncate(dst, src.stat().st_size)
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


def fsck(image: Path) -> None:
    """Check the unmounted filesystem in `image` (resize2fs wants it checked), fixing what is
    safe to fix; DriverError when errors remain."""
    cp = run(["e2fsck", "-f", "-p", str(image)], timeout=600, check=False)
    if cp.returncode > 1:      # 1: errors corrected
        raise DriverError(f"the filesystem in {image} has errors e2fsck cannot fix",
                          command=["e2fsck", "-f", "-p", str(image)],
                          stderr=(cp.stdout + cp.stderr).decode(errors="replace"))


def journal_size(size: int) -> int:
    """MiB of journal for an image of `size` bytes: small (4..64), it is overhead on every disk."""
    return max(4, min(64, size // (256 * MiB)))


def copy_tree(src: Path, dst: Path) -> None:
    """`dst` (new, or an existing directory to merge into) gets everything under `src`: ownership,
    modes, timestamps, hard links, xattrs (overlay's opaque and redirect marks) and device nodes
    (overlay's whiteouts) kept, blocks shared where the filesystem can."""
    run(["cp", "-dR", "--preserve=mode,ownership,timestamps,links,xattr", "--reflink=auto",
         "--no-target-directory", str(src), str(dst)], timeout=None)


def copy_into_place(src: Path, dest: Path) -> None:
    """`dest` becomes a copy of the tree `src`, whole or not at all (copied beside it, renamed)."""
    tmp = dest.with_name(f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}")
    try:
        copy_tree(src, tmp)
        os.rename(tmp, dest)
    except BaseException:
        rmtree(tmp, str(tmp))
        raise


def rmtree(path: Path, what: str) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise DriverError(f"cannot remove {what}: {e}") from e


def statvfs_used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class DirAreas:
    """Areas as plain directories: no limits (the "none" backend, and what the others build on)."""

    name = "none"
    quota = False
    quota_visible = False
    online_resize = False

    def __init__(self, pool: Path, note: str = "") -> None:
        self.pool = pool
        self.note = note or "a plain directory: disk limits cannot be enforced on this pool"
        self.tmp = pool / "tmp"

    # --- what every backend answers the same way for a plain directory
    def exists(self, area: Path) -> bool:
        return area.is_dir() or image_file(area).is_file()

    def is_image(self, area: Path) -> bool:
        return False

    def make(self, area: Path, size: int, owner: Owner, dirs: Sequence[str] = (),
             mode: int = 0o711) -> None:
        """A new area at `area` (which must not exist) limited to `size` where the backend can,
        its top dir with `mode`, owned by root when `dirs` are made in it (a root: upper and
        work, owned by `owner`), else by `owner` (a volume). On failure nothing is left."""
        with Reverter() as rev:
            area.mkdir(mode=mode)
            rev.add(lambda: rmtree(area, str(area)))
            os.chmod(area, mode)
            if not dirs:
                os.chown(area, owner.uid, owner.gid)
            for d in dirs:
                (area / d).mkdir(mode=0o755)
                os.chown(area / d, owner.uid, owner.gid)
            self.limit_new(area, size)
            rev.success()

    def limit_new(self, area: Path, size: int) -> None:
        """Hook: limit a freshly made plain directory (the project backend tags it)."""

    def activate(self, area: Path) -> None:
        """Make an existing area usable again (an image mounted after a host reboot)."""

    def remove(self, area: Path, what: str) -> None:
        rmtree(area, what)
        self.release(area)

    def release(self, area: Path) -> None:
        """Hook: forget what limited a removed plain directory."""

    def used(self, area: Path) -> int:
        if not self.exists(area):
            raise NotFound(f"{area.name} does not exist", resource="storage")
        return sum(walk_usage(area))

    def limit(self, area: Path) -> int:
        return 0

    def resize(self, area: Path, size: int, what: str) -> None:
        raise Unsupported(f"this pool cannot limit {what}: {self.note}")

    def check_fits(self, used: int, size: int, what: str) -> None:
        if size and used > size:
            raise InvalidInput(f"{what} uses {fmt_bytes(used)}: it cannot be limited to "
                               f"{fmt_bytes(size)}", used=used, size=size)

    # --- snapshots and copies
    def snapshot(self, area: Path, dest: Path) -> bool:
        """Keep `area`'s content as `dest` (a directory, or `dest.img`); True when copy-on-write.
        On failure nothing is left at `dest`."""
        copy_into_place(area, dest)
        return False

    def snapshot_exists(self, dest: Path) -> bool:
        return dest.is_dir() or image_file(dest).is_file()

    def remove_snapshot(self, dest: Path) -> None:
        rmtree(dest, f"snapshot {dest.name}")
        image_file(dest).unlink(missing_ok=True)

    @contextmanager
    def open_tree(self, src: Path) -> Iterator[Path]:
        """The directory holding what `src` (an area or a snapshot, of either kind) holds, for as
        long as the context lasts: itself, or its image mounted read-only on a temporary point."""
        image = image_file(src)
        if image.is_file() and not loop.is_mounted(src):
            # noload: a snapshot was cloned frozen (its journal is clean); never replay into it
            with loop.mounted_on_scratch(self.tmp, lambda mp: loop.mount_image(
                    image, mp, readonly=True, options="noload")) as mp:
                yield mp
        elif image.is_file() or src.is_dir():
            yield src
        else:
            raise NotFound(f"{src.name} does not exist", resource="storage")

    def copy(self, src: Path, area: Path, size: int, owner: Owner, what: str) -> None:
        """A new area at `area` holding what `src` holds (an area or a snapshot, either kind),
        limited to `size` where the backend can. On failure nothing is left."""
        with self.open_tree(src) as tree:
            self.check_fits(sum(walk_usage(tree)), size if self.quota else 0, what)
            with Reverter() as rev:
                rev.add(lambda: rmtree(area, str(area)))    # a copy that failed midway too
                copy_tree(tree, area)
                self.limit_new(area, size)
                rev.success()

    def replace(self, area: Path, src: Path, what: str, size: int | None = None) -> None:
        """`area` (unused) gets `src`'s content (a snapshot's; or its own, to change its kind),
        limited to `size` (None: its limit as it is). On failure it is left as it was."""
        st = area.stat()
        new = area.with_name(f".new-{area.name}-{uuid.uuid4().hex[:8]}")
        old = area.with_name(f".old-{area.name}-{uuid.uuid4().hex[:8]}")
        self.copy(src, new, self.limit(area) if size is None else size,
                  Owner(st.st_uid, st.st_gid), what)
        try:
            self.park(area, old, what)
        except BaseException:
            self.remove(new, what)
            raise
        try:
            self.unpark(new, area)
        except BaseException:
            self.unpark(old, area)
            self.remove(new, what)
            raise
        self.remove(old, what)

    def park(self, area: Path, to: Path, what: str) -> None:
        """Move an unused area aside (to be dropped, or put back with `unpark`)."""
        os.rename(area, to)

    def unpark(self, parked: Path, area: Path) -> None:
        os.rename(parked, area)

    def unmount_all(self, under: Path) -> None:
        """Unmount whatever is mounted below `under` (a pool being torn down)."""
        for mp in loop.mounts_under(under):
            loop.umount(mp)


class ProjectAreas(DirAreas):
    """Plain directories, each with its own project quota (XFS prjquota or ext4 project)."""

    name = "project"
    quota = True
    quota_visible = True      # statfs of a PROJINHERIT directory reports its project's limit
    online_resize = True

    def __init__(self, pool: Path, mountpoint: Path, fstype: str, *,
                 runner: Callable[[list[str]], object] | None = None) -> None:
        super().__init__(pool, note=f"project quotas ({fstype} at {mountpoint})")
        self.mountpoint, self.fstype = mountpoint, fstype
        self.registry = pool / "locks" / "projects.json"
        self._run: Callable[[list[str]], object] = runner or (lambda argv: run(argv))

    FIRST_ID = 10000

    @contextmanager
    def _ids(self) -> Iterator[dict[str, int]]:
        """The pool's project ids (area path relative to the pool → id), under its lock."""
        self.registry.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.registry.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            ids: dict[str, int] = json.loads(self.registry.read_text()) \
                if self.registry.exists() else {}
            before = dict(ids)
            yield ids
            if ids != before:
                tmp = self.registry.with_suffix(".tmp")
                tmp.write_text(json.dumps(ids, sort_keys=True))
                os.replace(tmp, self.registry)
        finally:
            os.close(fd)

    def _key(self, area: Path) -> str:
        return str(area.relative_to(self.pool))

    def project_id(self, area: Path) -> int | None:
        with self._ids() as ids:
            return ids.get(self._key(area))

    def _quota(self, *commands: str) -> None:
        argv = ["xfs_quota", "-x"]
        if self.fstype != "xfs":
            argv.append("-f")        # ext4 and other "foreign" filesystems
        for c in commands:
            argv += ["-c", c]
        self._run([*argv, str(self.mountpoint)])

    def limit_new(self, area: Path, size: int) -> None:
        if not size:        # no limit: no project (resize tags it when one is asked for)
            return
        with self._ids() as ids:
            key = self._key(area)
            pid = ids.get(key)
            if pid is None:
                taken = set(ids.values())
                pid = next(i for i in range(self.FIRST_ID, self.FIRST_ID + len(taken) + 1)
                           if i not in taken)
                ids[key] = pid
            try:
                # -s: tag the tree and set the inherit flag, so whatever is made below counts
                self._quota(f"project -s -p {area} {pid}", f"limit -p bhard={size} {pid}")
            except BaseException:
                ids.pop(key, None)
                raise

    def release(self, area: Path) -> None:
        with self._ids() as ids:
            pid = ids.pop(self._key(area), None)
            if pid is not None:
                self._quota(f"limit -p bhard=0 {pid}")

    def limit(self, area: Path) -> int:
        # the limit is the project's: statfs of a tagged directory reports it as the capacity
        if self.project_id(area) is None:
            return 0
        st = os.statvfs(area)
        return st.f_blocks * st.f_frsize

    def used(self, area: Path) -> int:
        if self.project_id(area) is None:
            return super().used(area)
        return statvfs_used(area)

    def resize(self, area: Path, size: int, what: str) -> None:
        self.check_fits(self.used(area), size, what)
        pid = self.project_id(area)
        if pid is None:
            self.limit_new(area, size)
        else:
            self._quota(f"limit -p bhard={size} {pid}")

    def park(self, area: Path, to: Path, what: str) -> None:
        super().park(area, to, what)
        with self._ids() as ids:
            pid = ids.pop(self._key(area), None)
            if pid is not None:
                ids[self._key(to)] = pid

    def unpark(self, parked: Path, area: Path) -> None:
        super().unpark(parked, area)
        with self._ids() as ids:
            pid = ids.pop(self._key(parked), None)
            if pid is not None:
                ids[self._key(area)] = pid


class ImageAreas(DirAreas):
    """Limited areas on their own ext4 image files; unlimited ones as plain directories."""

    name = "image"
    quota = True
    quota_visible = True
    online_resize = True      # growing only (a shrink needs the filesystem unmounted)

    def __init__(self, pool: Path, *, reflink: bool) -> None:
        note = ("each limited root and volume is its own ext4 image "
                f"({'reflinked' if reflink else 'formatted'} per disk)")
        # ext4's online resize (EXT4_IOC_RESIZE_FS) demands CAP_SYS_RESOURCE of the caller
        self.online_resize = has_capability(CAP_SYS_RESOURCE)
        if not self.online_resize:
            note += "; this agent lacks CAP_SYS_RESOURCE, so a disk grows only while unused"
        super().__init__(pool, note=note)
        self.reflink = reflink
        self.blanks = pool / "blanks"

    def is_image(self, area: Path) -> bool:
        return image_file(area).is_file()

    # --- making images
    def _mkfs(self, image: Path, size: int, owner: Owner, dirs: Sequence[str]) -> None:
        """Format a new sparse file: `dirs` owned by `owner` under a root-owned top, or (no
        dirs) a top owned by `owner` (a volume's: lost+found stays, e2fsck wants it back)."""
        self.tmp.mkdir(mode=0o711, exist_ok=True)
        src = self.tmp / f"mkfs-{uuid.uuid4().hex[:12]}"
        src.mkdir(mode=0o711)
        try:
            for d in dirs:
                (src / d).mkdir(mode=0o755)
                os.chown(src / d, owner.uid, owner.gid)
            top = "0:0" if dirs else f"{owner.uid}:{owner.gid}"
            with open(image, "xb") as f:
                f.truncate(size)
            argv = [*EXT4_MKFS, "-J", f"size={journal_size(size)}",
                    "-E", f"{EXT4_EXTENDED},root_owner={top}"]
            if dirs:
                argv += ["-d", str(src)]
            run([*argv, str(image)], timeout=120)
        except BaseException:
            image.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(src, ignore_errors=True)

    def _new_image(self, image: Path, size: int, owner: Owner, dirs: Sequence[str]) -> None:
        """A formatted image at `image`: a clone of this pool's blank of that shape where the
        pool's filesystem shares blocks (no formatting on the launch path), else formatted."""
        if not self.reflink:
            self._mkfs(image, size, owner, dirs)
            return
        shape = f"{size}-{owner.uid}-{owner.gid}-{'+'.join(dirs) or 'top'}"
        blank = self.blanks / f"ext4-{shape}.img"
        if not blank.is_file():
            self.blanks.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(self.blanks / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not blank.is_file():     # another caller made it while we waited
                    tmp = blank.with_name(f".tmp-{uuid.uuid4().hex[:8]}")
                    self._mkfs(tmp, size, owner, dirs)
                    os.rename(tmp, blank)
            finally:
                os.close(fd)
        if not loop.reflink(blank, image):
            self._mkfs(image, size, owner, dirs)

    def make(self, area: Path, size: int, owner: Owner, dirs: Sequence[str] = (),
             mode: int = 0o711) -> None:
        if not size:
            super().make(area, size, owner, dirs, mode)
            return
        if size < MIN_IMAGE_SIZE:
            raise InvalidInput(f"a disk limit below {fmt_bytes(MIN_IMAGE_SIZE)} is too small",
                               size=size)
        size -= size % BLOCK          # whole blocks: the file's size is the limit it reports
        image = image_file(area)
        with Reverter() as rev:
            tmp = image.with_name(f".tmp-{image.name}-{uuid.uuid4().hex[:8]}")
            self._new_image(tmp, size, owner, dirs)
            rev.add(lambda: tmp.unlink(missing_ok=True))
            area.mkdir(mode=0o711)
            rev.add(area.rmdir)
            # in place before it is mounted: a crash from here on leaves a whole, usable area
            os.rename(tmp, image)
            rev.add(lambda: image.unlink(missing_ok=True))
            self._mount(area)
            rev.add(lambda: loop.umount(area))
            os.chmod(area, mode)
            rev.success()

    # --- mounting
    def _mount(self, area: Path) -> None:
        loop.mount_image(image_file(area), area, options=EXT4_OPTIONS)

    def activate(self, area: Path) -> None:
        if self.is_image(area) and not loop.is_mounted(area):
            area.mkdir(mode=0o711, exist_ok=True)
            if loop.loop_users(image_file(area)):
                # still attached (an instance holds the filesystem, our mount went away): mount
                # that device again, never a second filesystem over the same file
                loop.remount_device(loop.loop_users(image_file(area))[0], area,
                                    options=EXT4_OPTIONS)
            else:
                self._mount(area)

    def _unmount(self, area: Path, what: str) -> None:
        """Unmount an image area, InUse (and mounted again) while anything else holds it: a
        running instance's overlay keeps the filesystem alive after the host's mount is gone."""
        image = image_file(area)
        m = loop.mount_of(area)
        if m is not None:
            loop.umount(area)
        try:
            # the kernel detaches an autoclear loop device from a work queue after the last
            # unmount: on a loaded host (load 5 on 2 cores) that took over 0.5 s
            wait_until(lambda: not loop.loop_users(image), 5, f"{what} detaching")
        except DriverError:
            devs = loop.loop_users(image)
            if devs and not loop.is_mounted(area):
                loop.remount_device(devs[0], area, options=EXT4_OPTIONS)
            raise InUse(f"{what} is in use (its instance runs?): stop it first",
                        device=devs[0] if devs else "") from None

    def remove(self, area: Path, what: str) -> None:
        if not self.is_image(area):
            super().remove(area, what)
            return
        self._unmount(area, what)
        image_file(area).unlink(missing_ok=True)
        loop.remove_dir(area, what)

    def used(self, area: Path) -> int:
        if not self.is_image(area):
            return super().used(area)
        self.activate(area)
        return statvfs_used(area)

    def limit(self, area: Path) -> int:
        return image_file(area).stat().st_size if self.is_image(area) else 0

    # --- resizing
    def resize(self, area: Path, size: int, what: str) -> None:
        if size and size < MIN_IMAGE_SIZE:
            raise InvalidInput(f"a disk limit below {fmt_bytes(MIN_IMAGE_SIZE)} is too small",
                               size=size)
        size -= size % BLOCK
        current = self.limit(area)
        if size == current:
            return
        self.check_fits(self.used(area), size, what)
        if not self.is_image(area) or not size:
            self.replace(area, area, what, size)   # to or from a plain directory: offline
        elif size > current:
            self._grow(area, size, what)
        else:
            self._shrink(area, size, what)

    def _grow(self, area: Path, size: int, what: str) -> None:
        self.activate(area)
        if not self.online_resize:      # without CAP_SYS_RESOURCE: only while unused
            self._shrink(area, size, what)
            return
        image = image_file(area)
        before = image.stat().st_size
        dev = loop.loop_users(image)[0]
        os.truncate(image, size)
        try:
            loop.refresh_capacity(dev)
            run(["resize2fs", dev], timeout=300)     # online: the filesystem stays mounted
        except BaseException:
            os.truncate(image, before)
            loop.refresh_capacity(dev)
            raise

    def _shrink(self, area: Path, size: int, what: str) -> None:
        """Resize offline (any direction): InUse while an instance holds the filesystem."""
        self._unmount(area, what)
        try:
            self._fit_offline(image_file(area), size, what)
        finally:
            self._mount(area)

    # --- snapshots and copies
    def snapshot(self, area: Path, dest: Path) -> bool:
        if not self.is_image(area):
            return super().snapshot(area, dest)
        self.activate(area)
        target = image_file(dest)
        tmp = target.with_name(f".tmp-{target.name}-{uuid.uuid4().hex[:8]}")
        try:
            # frozen: every write is in the file and the journal is clean while it is cloned
            with loop.frozen(area):
                cow = loop.clone_file(image_file(area), tmp)
            os.rename(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return cow

    def copy(self, src: Path, area: Path, size: int, owner: Owner, what: str) -> None:
        src_image = image_file(src)
        if not size:
            super().copy(src, area, 0, owner, what)
        elif src_image.is_file():
            self._copy_image(src, area, size, what)
        else:      # a plain tree into a new image: make it, then copy into it
            with self.open_tree(src) as tree:
                self.check_fits(sum(walk_usage(tree)), size, what)
                st = tree.stat()
                with Reverter() as rev:
                    self.make(area, size, Owner(st.st_uid, st.st_gid), mode=st.st_mode & 0o7777)
                    rev.add(lambda: self.remove(area, what))
                    copy_tree(tree, area)
                    rev.success()

    def _copy_image(self, src: Path, area: Path, size: int, what: str) -> None:
        """Clone `src`'s file (frozen if it is mounted), fit it to `size`, mount it at `area`."""
        image = image_file(area)
        tmp = image.with_name(f".tmp-{image.name}-{uuid.uuid4().hex[:8]}")
        with Reverter() as rev:
            with loop.frozen(src) if loop.is_mounted(src) else nullcontext():
                copy_image(image_file(src), tmp)
            rev.add(lambda: tmp.unlink(missing_ok=True))
            self._fit_offline(tmp, size, what)
            area.mkdir(mode=0o711)
            rev.add(area.rmdir)
            os.rename(tmp, image)
            rev.add(lambda: image.unlink(missing_ok=True))
            self._mount(area)
            rev.success()

    def _fit_offline(self, image: Path, size: int, what: str) -> None:
        """Resize the unmounted filesystem in `image` to `size` (InvalidInput when what it holds
        does not fit)."""
        size -= size % BLOCK
        current = image.stat().st_size
        if size == current:
            return
        fsck(image)
        if size > current:
            os.truncate(image, size)
            run(["resize2fs", str(image)], timeout=600)
            return
        out = run(["resize2fs", "-P", str(image)], timeout=600).stdout.decode()
        minimum = int(out.strip().rsplit(":", 1)[-1]) * BLOCK
        if size < minimum:
            raise InvalidInput(f"{what} needs at least {fmt_bytes(minimum)} for what it holds: "
                               f"it cannot be limited to {fmt_bytes(size)}",
                               size=size, minimum=minimum)
        run(["resize2fs", str(image), f"{size // 1024}K"], timeout=600)
        os.truncate(image, size)

    def park(self, area: Path, to: Path, what: str) -> None:
        if not self.is_image(area):
            super().park(area, to, what)
            return
        self._unmount(area, what)
        try:
            os.rename(image_file(area), image_file(to))
            area.rmdir()
        except BaseException:
            if image_file(to).is_file():
                os.rename(image_file(to), image_file(area))
            self._mount(area)
            raise

    def unpark(self, parked: Path, area: Path) -> None:
        if not image_file(parked).is_file():
            super().unpark(parked, area)
            return
        if self.is_image(parked) and loop.is_mounted(parked):
            self._unmount(parked, str(parked))
            parked.rmdir()
        os.rename(image_file(parked), image_file(area))
        area.mkdir(mode=0o711, exist_ok=True)
        self._mount(area)
