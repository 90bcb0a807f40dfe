"""Helpers shared by image builders: streaming a long command's output, packing a rootfs, cleanup."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from lxcloud.core.errors import DriverError
from lxcloud.core.proc import run
from lxcloud.images.unpack import ArchiveInfo, check_archive

Progress = Callable[[str], None]


def run_streaming(argv: Sequence[str], *, on_line: Progress | None, timeout: float,
                  env: dict[str, str] | None = None) -> None:
    """Run argv, handing each output line (stdout+stderr) to `on_line` as it comes.

    core.proc.run only returns output at the end; a builder's progress must be live. Raises
    DriverError with the command and the last output lines on a non-zero exit or after `timeout`.
    """
    argv = list(argv)
    try:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                             stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DriverError(f"{argv[0]} is not installed", command=argv) from None
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        p.kill()

    # A watchdog, not a per-line check: a hung command may print nothing at all.
    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    tail: deque[str] = deque(maxlen=60)
    try:
        assert p.stdout is not None
        for raw in p.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            if on_line is not None and line:
                on_line(line)
        rc = p.wait()
    except BaseException:
        p.kill()
        p.wait()
        raise
    finally:
        timer.cancel()
        if p.stdout is not None:
            p.stdout.close()
    if timed_out.is_set():
        raise DriverError(f"{argv[0]} timed out after {timeout}s", command=argv, stderr="\n".join(tail))
    if rc != 0:
        raise DriverError(f"{' '.join(argv[:3])} failed (exit {rc})", command=argv, stderr="\n".join(tail))


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first (from /proc/self/mountinfo)."""
    base = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # Field 5 is the mount point, with spaces etc. octal-escaped.
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == base or mp.startswith(base + "/"):
                found.append(mp)
    return sorted(found, key=lambda m: -m.count("/"))


def remove_tree(path: Path) -> None:
    """Remove a build tree, unmounting anything a killed debootstrap/chroot left mounted in it
    first (rmtree must never descend into a live /proc, /sys or /dev)."""
    if not os.path.lexists(path):
        return
    for mp in mounts_below(path):
        run(["umount", "-l", mp], check=False)
    if mounts_below(path):
        raise DriverError(f"cannot unmount everything below {path}; not removing it")
    shutil.rmtree(path, ignore_errors=False)


def pack_rootfs(root: Path, out: Path, *, exclude: Sequence[str] = (), timeout: float = 900,
                level: int = 6) -> ArchiveInfo:
    """Pack `root` as a .tar.zst with numeric owners into `out` (temp file + rename), check it
    with check_archive and return what it found. `exclude`: paths like "./dev/*"."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    argv = ["tar", "--numeric-owner", "--sort=name", "-I", f"zstd -q -T0 -{level}", "-C", str(root)]
    argv += [f"--exclude={e}" for e in exclude]
    argv += ["-cf", str(tmp), "."]
    try:
        run(argv, timeout=timeout)
        info = check_archive(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info


def apt_mirror(default: str = "http://deb.debian.org/debian") -> str:
    """The Debian mirror apt uses on this host (deb822 .sources first, then sources.list)."""
    uris: list[str] = []
    d = Path("/etc/apt/sources.list.d")
    for src in sorted(d.glob("*.sources")) if d.is_dir() else []:
        for line in src.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "URIs":
                uris += value.split()
    lists = [Path("/etc/apt/sources.list"), *sorted(d.glob("*.list"))] if d.is_dir() else \
        [Path("/etc/apt/sources.list")]
    for lst in lists:
        if lst.is_file():
            for line in lst.read_text(errors="replace").splitlines():
                parts = line.split("#", 1)[0].split()
                if parts[:1] == ["deb"]:
                    # Skip "[arch=... signed-by=...]" options.
                    rest = [p for p in parts[1:] if not (p.startswith("[") or p.endswith("]") or "=" in p)]
                    if rest:
                        uris.append(rest[0])
    for uri in uris:
        u = uri.rstrip("/")
        if u.startswith(("http://", "https://")) and not u.endswith(("-security", "-updates")) \
                and "security" not in u.rsplit("/", 1)[-1]:
            return u
    return default
