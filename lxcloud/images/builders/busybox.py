"""The busybox image: a few hundred KiB root built in well under a second from the host's busybox-static.

Unlike LXC's own busybox template it runs no udhcpc (which, with no DHCP server, wipes the static
address LXC configured ~0.3 s after start and stalls clean shutdowns): the address comes from LXC.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
from pathlib import Path

from lxcloud.core.errors import DriverError
from lxcloud.core.proc import run
from lxcloud.images.builders.busybox_fallbacks import FALLBACKS

BUSYBOX = Path("/bin/busybox")

INITTAB = """\
# lxcloud busybox image
::sysinit:/etc/init.d/rcS
::respawn:-/bin/sh
# lxc-stop -r sends SIGINT (ctrl-alt-del); busybox's reboot sends SIGTERM to init, which reboots
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
"""

RCS = """\
#!/bin/sh
# lxcloud busybox sysinit: pseudo filesystems, hostname, then /etc/rc.local. Nothing about the
# network: LXC has already configured eth0's address and route before init starts.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
# LXC has mounted /proc (with lxcfs files over it), /sys and /dev/pts already: mounting again would
# hide them. This busybox has no `mountpoint` applet, hence the look into /proc/mounts.
[ -e /proc/self/mounts ] || mount -t proc proc /proc
mnt() { grep -q "^[^ ]* $3 " /proc/mounts || mount -t "$1" "$2" "$3" 2>/dev/null; }
mnt sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mnt devpts devpts /dev/pts
mnt tmpfs tmpfs /run
mnt tmpfs tmpfs /dev/shm
ip link set lo up 2>/dev/null
[ -s /etc/hostname ] && hostname -F /etc/hostname
# A machine of its own, as systemd does it: an id made at the first boot (and anew in a clone,
# whose /etc/machine-id is emptied).
[ -s /etc/machine-id ] || { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; echo; } > /etc/machine-id
echo "lxcloud-busybox: booted $(hostname)"
# User data that is a script (#!) runs once, at first boot: marked done before it runs (a reboot
# mid-script does not run it twice), in the background so init is not held up, its output on
# /dev/console, which LXC records in the instance's console log.
ud=/var/lib/lxcloud/user-data
if [ -s "$ud" ] && [ ! -e "$ud.done" ] && [ "$(head -c 2 "$ud")" = "#!" ]; then
  : > "$ud.done"
  chmod 700 "$ud"
  setsid "$ud" </dev/null >/dev/console 2>&1 &
fi
[ -x /etc/rc.local ] && /etc/rc.local
exit 0
"""

# busybox's free takes its totals from sysinfo(2), which lxcfs cannot virtualize: it would show the
# host's memory. This one reads /proc/meminfo, which lxcfs does show as the container's limits.
FREE = """\
#!/bin/sh
div=1024
case "$1" in -b) div=1;; -k) div=1024;; -m) div=1048576;; -g) div=1073741824;; esac
awk -v d="$div" '
  { v[$1] = $2 * 1024 }
  END {
    t = v["MemTotal:"]; f = v["MemFree:"]; b = v["Buffers:"] + v["Cached:"]; a = v["MemAvailable:"]
    printf "%15s%12s%12s%12s%12s%12s\\n", "total", "used", "free", "shared", "buff/cache", "available"
    printf "Mem:%11d%12d%12d%12d%12d%12d\\n", t/d, (t-f-b)/d, f/d, v["Shmem:"]/d, b/d, a/d
    st = v["SwapTotal:"]; sf = v["SwapFree:"]
    printf "Swap:%10d%12d%12d\\n", st/d, (st-sf)/d, sf/d
  }' /proc/meminfo
"""

# the same for uptime: /proc/uptime and /proc/loadavg are the container's own under lxcfs
UPTIME = """\
#!/bin/sh
read up _ < /proc/uptime
read l1 l5 l15 _ < /proc/loadavg
s=${up%.*}
printf " %s up %d days, %02d:%02d,  load average: %s, %s, %s\\n" "$(date +%H:%M:%S)" \\
  $((s / 86400)) $((s % 86400 / 3600)) $((s % 3600 / 60)) "$l1" "$l5" "$l15"
"""
# busybox's shell runs its own applets before looking at PATH: functions win over both.
PROFILE = """\
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PS1='\\h:\\w\\$ '
export ENV=/etc/profile
free() { /usr/bin/free "$@"; }
uptime() { /usr/bin/uptime "$@"; }
"""

FILES: dict[str, tuple[str, int]] = {
    "usr/bin/free": (FREE, 0o755),
    "usr/bin/uptime": (UPTIME, 0o755),
    "etc/inittab": (INITTAB, 0o644),
    "etc/init.d/rcS": (RCS, 0o755),
    "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                   0o644),
    "etc/group": ("root:x:0:\nnogroup:x:65534:\n", 0o644),
    "etc/shadow": ("root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", 0o600),
    "etc/hostname": ("busybox\n", 0o644),
    "etc/hosts": ("127.0.0.1 localhost\n::1 localhost\n", 0o644),
    "etc/resolv.conf": ("", 0o644),
    "etc/profile": (PROFILE, 0o644),
    "etc/os-release": ('NAME="lxcloud busybox"\nID=busybox\nPRETTY_NAME="lxcloud busybox"\n', 0o644),
}
DIRS: dict[str, int] = {
    "bin": 0o755, "sbin": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "etc/init.d": 0o755,
    "proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755, "var/log": 0o755, "var/run": 0o755,
    "root": 0o700, "tmp": 0o1777, "home": 0o755, "mnt": 0o755, "lib": 0o755, "var/lib": 0o755,
}


def busybox_version() -> str:
    """The host busybox's version, e.g. "1.35.0"."""
    out = run([str(BUSYBOX)], check=False).stdout.decode(errors="replace")
    m = re.search(r"BusyBox v(\d+(?:\.\d+)+)", out)
    if not m:
        raise DriverError("cannot tell the version of /bin/busybox (is busybox-static installed?)")
    return m.group(1)


def _applets() -> list[str]:
    """Every applet's install path relative to /, e.g. "bin/sh", "sbin/init"."""
    out = run([str(BUSYBOX), "--list-full"]).stdout.decode()
    return [line.strip().lstrip("/") for line in out.splitlines() if line.strip()]


def build_busybox_tree(dest: Path) -> None:
    """Fill the (empty or missing) directory `dest` with the busybox root filesystem: every
    applet of the host's busybox (`busybox --list-full`) linked at its own path, our free and
    uptime over them, and a shell stand-in for each tool of FALLBACKS this busybox lacks."""
    if not BUSYBOX.exists():
        raise DriverError("/bin/busybox is missing: apt-get install busybox-static")
    dest.mkdir(parents=True, exist_ok=True)
    for d, mode in DIRS.items():
        p = dest / d
        p.mkdir(parents=True, exist_ok=True)
        p.chmod(mode)   # mkdir honours the umask; these modes (1777 /tmp) must be exact
    shutil.copy2(BUSYBOX, dest / "bin/busybox")
    (dest / "bin/busybox").chmod(0o755)
    applets = _applets()
    for applet in applets:
        link = dest / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        # Absolute target: the link resolves inside the container's root, wherever it lives.
        os.symlink("/bin/busybox", link)
    have = {Path(a).name for a in applets}
    files = dict(FILES)
    files.update({f"usr/bin/{name}": (text, 0o755) for name, text in FALLBACKS.items()
                  if name not in have})
    for rel, (text, mode) in files.items():
        p = dest / rel
        if p.is_symlink():
            p.unlink()   # an applet link replaced by our own script
        p.write_text(text)
        p.chmod(mode)
    (dest / "var/run").rmdir()
    os.symlink("/run", dest / "var/run")


def _root_owned(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def build_busybox(out_tar: Path) -> dict[str, str]:
    """Build the image as a tar (numeric owners 0:0) at `out_tar`; return its metadata."""
    work = out_tar.parent / f".{out_tar.name}.tree"
    tmp_tar = out_tar.parent / f".{out_tar.name}.part"
    shutil.rmtree(work, ignore_errors=True)
    try:
        build_busybox_tree(work)
        with tarfile.open(tmp_tar, "w", format=tarfile.PAX_FORMAT) as tf:
            for entry in sorted(work.rglob("*")):
                tf.add(entry, arcname=str(entry.relative_to(work)), recursive=False, filter=_root_owned)
        os.replace(tmp_tar, out_tar)   # atomic: readers never see half a template
    finally:
        shutil.rmtree(work, ignore_errors=True)
        tmp_tar.unlink(missing_ok=True)
    return busybox_metadata()


def busybox_metadata() -> dict[str, str]:
    """The image metadata of the busybox image (SIGUSR1 = busybox init's halt)."""
    return {"os": "busybox", "release": busybox_version(), "architecture": "amd64",
            "halt_signal": "SIGUSR1", "init": "/sbin/init"}
