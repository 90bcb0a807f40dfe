"""Build a Debian system-container template with debootstrap (systemd as init, sshd, optional cloud-init).

The result boots as an unprivileged LXC container: LXC configures eth0 (static address + gateway)
before init, so the image ships NO DHCP client service or ifupdown that would take eth0 over;
/etc/resolv.conf is written by the launcher; sshd host keys are made at first boot.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from lxcloud.core.errors import InvalidInput
from lxcloud.core.proc import run
from lxcloud.images.builders.common import Progress, apt_mirror, pack_rootfs, remove_tree, run_streaming
from lxcloud.images.unpack import ArchiveInfo

ARCHES = ("amd64", "i386", "arm64", "armhf")
BASE_PACKAGES = ("systemd-sysv", "dbus", "libpam-systemd", "iproute2", "iputils-ping", "openssh-server",
                 "ca-certificates", "procps", "less", "netbase")
CLOUD_INIT_PACKAGES = ("cloud-init", "locales", "sudo")
HALT_SIGNAL = "SIGRTMIN+3"  # systemd's "halt" signal; LXC's default SIGPWR means "reboot" to it
INIT = "/sbin/init"

# Units that fail or make no sense in a container, or would wake every container at once.
MASKED_UNITS = ("e2scrub_reap.service", "e2scrub_all.timer", "fstrim.timer", "apt-daily.timer",
                "apt-daily-upgrade.timer", "systemd-pstore.service", "systemd-networkd-wait-online.service")

SSH_KEYGEN_UNIT = """\
[Unit]
Description=Generate SSH host keys (lxcloud images ship none)
Before=ssh.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=ssh.service
"""

# User data that is a script (#!) runs once at first boot, its output in the journal and on the
# console (LXC's console log). Images with cloud-init leave user data to cloud-init.
USER_DATA_UNIT = """\
[Unit]
Description=Run the instance's user data once (lxcloud)
After=network-online.target
Wants=network-online.target
ConditionPathExists=/var/lib/lxcloud/user-data
ConditionPathExists=!/var/lib/lxcloud/user-data.done
ConditionPathExists=!/usr/bin/cloud-init

[Service]
Type=oneshot
# marked done first: a reboot in the middle of the script does not run it a second time
ExecStartPre=/usr/bin/touch /var/lib/lxcloud/user-data.done
ExecStart=/bin/sh -c 'ud=/var/lib/lxcloud/user-data; [ "$$(head -c 2 $$ud)" = "#!" ] || exit 0; \
chmod 700 $$ud; exec $$ud'
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
"""

CLOUD_CFG = """\
# lxcloud: LXC configures eth0 before init; cloud-init must not rewrite the network.
network: {config: disabled}
datasource_list: [NoCloud, Ec2, None]
datasource:
  Ec2:
    strict_id: false
    metadata_urls: ["http://169.254.169.254"]
    # on a network without the metadata service, give up after a minute, not cloud-init's 120 s
    max_wait: 60
    timeout: 10
locale: en_US.UTF-8
"""

# ds-identify (the systemd generator that decides whether cloud-init runs at all) never finds Ec2 in
# a container (`is_container && return DS_NOT_FOUND`, before strict_id is even read) and then
# disables cloud-init. This is a cloud image: run cloud-init with datasource_list regardless; its own
# Ec2 datasource (strict_id: false) then finds our metadata service.
DS_IDENTIFY_CFG = "policy: search,found=all,maybe=all,notfound=enabled\n"

# The console is as privileged as exec (both need the instance's API rights): it logs root in
# without a password. `lxc-console -t 0` (what `lxcloud console` attaches) is /dev/console, served
# by console-getty.service; container-getty@N.service would serve the ttys, should LXC announce
# them (container_ttys, which it does not with the userns config): both only reachable through
# lxc-console. root's password stays locked, so nothing else logs in without a key. (`-f` in
# login's options: agetty's --login-options replace the `-f` that --autologin would add.)
AUTOLOGIN = {
    "console-getty.service": "-/sbin/agetty -o '-p -f -- \\\\u' --autologin root --noclear --keep-baud "
                             "- 115200,38400,9600 $TERM",
    "container-getty@.service": "-/sbin/agetty -o '-p -f -- \\\\u' --autologin root --noclear - $TERM",
}
AUTOLOGIN_DROPIN = "lxcloud-autologin.conf"

# ssh: keys only, for root too (its password is locked; this says so to anyone reading sshd's config)
SSHD_CONFIG = """\
# lxcloud: keys only. root's password is locked; the console (lxcloud console) logs root in.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
"""

HOSTS = """\
127.0.0.1\tlocalhost
::1\t\tlocalhost ip6-localhost ip6-loopback
ff02::1\t\tip6-allnodes
ff02::2\t\tip6-allrouters
"""


def build_debian(out: Path, *, release: str = "bookworm", arch: str = "amd64", cloud_init: bool = False,
                 progress: Progress | None = None, cache_dir: Path | None = None,
                 mirror: str | None = None, timeout: float = 1800) -> ArchiveInfo:
    """Build a Debian `release`/`arch` rootfs and write it to `out` as a checked .tar.zst.

    debootstrap --variant=minbase from `mirror` (default: the mirror apt uses on this host), with
    systemd-sysv, sshd, iproute2, ca-certificates (+ cloud-init, locales, sudo if `cloud_init`).
    Its output lines go to `progress`; downloaded .debs are kept in `cache_dir` for fast rebuilds.
    Returns the archive's ArchiveInfo with os="debian", release, architecture=arch,
    init="/sbin/init", halt_signal="SIGRTMIN+3". Raises InvalidInput for a bad arch/release and
    DriverError if debootstrap or packing fails; nothing is left behind but `cache_dir`.
    """
    if arch not in ARCHES:
        raise InvalidInput(f"unsupported architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    if not release.isalnum():
        raise InvalidInput(f"invalid release {release!r}")
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _line: None)
    work = Path(tempfile.mkdtemp(prefix=".debootstrap-", dir=out.parent))
    root = work / "rootfs"
    try:
        argv = ["debootstrap", "--variant=minbase", f"--arch={arch}", "--merged-usr",
                f"--include={','.join(BASE_PACKAGES)}"]
        if cache_dir is not None:
            cache_dir = Path(cache_dir).absolute()
            cache_dir.mkdir(parents=True, exist_ok=True)
            argv.append(f"--cache-dir={cache_dir}")
        argv += [release, str(root), mirror or apt_mirror()]
        say(f"debootstrap {release}/{arch} from {argv[-1]}")
        run_streaming(argv, on_line=say, timeout=timeout, env=_env())
        if cloud_init:
            # Not via --include: debootstrap's one-pass configure breaks on cloud-init's python
            # dependency tree (python3-cryptography); apt in the chroot orders it properly.
            say("installing cloud-init")
            _apt_install(root, CLOUD_INIT_PACKAGES, cache_dir, say, timeout)
        say("configuring the image for containers")
        _configure(root, cloud_init)
        say(f"packing {out.name}")
        # LXC gives the container its own /dev; host device nodes would be skipped anyway.
        info = pack_rootfs(root, out, exclude=("./dev/*", "./proc/*", "./sys/*"))
    finally:
        remove_tree(work)
    say(f"built {out.name}: {info.size} bytes, {info.entries} entries")
    return dataclasses.replace(info, os="debian", release=release, architecture=arch, init=INIT,
                               halt_signal=HALT_SIGNAL)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env.update(LANG="C.UTF-8", DEBIAN_FRONTEND="noninteractive",
               PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    return env


def _apt_install(root: Path, packages: tuple[str, ...], cache_dir: Path | None, say: Progress,
                 timeout: float) -> None:
    """apt-get install inside the chroot, with /proc mounted and the .deb cache shared."""
    mounted: list[Path] = []
    policy = root / "usr/sbin/policy-rc.d"
    try:
        run(["mount", "-t", "proc", "proc", str(root / "proc")])
        mounted.append(root / "proc")
        if cache_dir is not None:
            (cache_dir / "partial").mkdir(exist_ok=True)
            run(["mount", "--bind", str(cache_dir), str(root / "var/cache/apt/archives")])
            mounted.append(root / "var/cache/apt/archives")
        _write(policy, "", "exit 101\n", 0o755)  # no daemon may start inside the build chroot
        run_streaming(["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends",
                       *packages], on_line=say, timeout=timeout, env=_env())
    finally:
        policy.unlink(missing_ok=True)
        for mp in reversed(mounted):
            run(["umount", "-l", str(mp)], check=False)


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    p = root / rel if rel else root
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_symlink():
        p.unlink()  # never write through a link into the host
    p.write_text(text)
    p.chmod(mode)


def _configure(root: Path, cloud_init: bool) -> None:
    """Make the fresh tree a clean, container-ready, per-instance-unique template."""
    # Identity: each instance gets its own. An empty machine-id makes systemd generate one.
    _write(root, "etc/machine-id", "", 0o444)
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    _write(root, "etc/hostname", "")
    _write(root, "etc/hosts", HOSTS)
    _write(root, "etc/resolv.conf", "# written by lxcloud when the instance is launched\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()

    # root: no password login (keys via cloud-init / the launcher; the console logs it in).
    shadow = root / "etc/shadow"
    lines = shadow.read_text().splitlines()
    lines = [f"root:!*:{ln.split(':', 2)[2]}" if ln.startswith("root:") else ln for ln in lines]
    shadow.write_text("\n".join(lines) + "\n")

    units = root / "etc/systemd/system"
    for unit in MASKED_UNITS:
        link = units / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
        for wants in units.glob(f"*.wants/{unit}"):
            wants.unlink()
    _write(root, "etc/systemd/system/lxcloud-ssh-keygen.service", SSH_KEYGEN_UNIT)
    wants = units / "ssh.service.wants"
    wants.mkdir(exist_ok=True)
    (wants / "lxcloud-ssh-keygen.service").unlink(missing_ok=True)
    (wants / "lxcloud-ssh-keygen.service").symlink_to("/etc/systemd/system/lxcloud-ssh-keygen.service")

    for unit, exec_start in AUTOLOGIN.items():
        _write(root, f"etc/systemd/system/{unit}.d/{AUTOLOGIN_DROPIN}",
               f"[Service]\nExecStart=\nExecStart={exec_start}\n")
    _write(root, "etc/ssh/sshd_config.d/lxcloud.conf", SSHD_CONFIG)

    _write(root, "etc/systemd/system/lxcloud-user-data.service", USER_DATA_UNIT)
    mu = units / "multi-user.target.wants"
    mu.mkdir(exist_ok=True)
    (mu / "lxcloud-user-data.service").unlink(missing_ok=True)
    (mu / "lxcloud-user-data.service").symlink_to("/etc/systemd/system/lxcloud-user-data.service")

    if cloud_init:
        _write(root, "etc/cloud/cloud.cfg.d/90-lxcloud.cfg", CLOUD_CFG)
        _write(root, "etc/cloud/ds-identify.cfg", DS_IDENTIFY_CFG)
        _write(root, "etc/locale.gen", "en_US.UTF-8 UTF-8\n")
        _write(root, "etc/default/locale", "LANG=en_US.UTF-8\n")
        run(["chroot", str(root), "/usr/sbin/locale-gen"], timeout=300, env=_env())

    # Caches and logs of the build itself: ~100 MB nobody needs in every template.
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*",
                    "var/log/bootstrap.log", "var/log/dpkg.log", "var/log/alternatives.log",
                    "var/log/apt/*.log"):
        for p in root.glob(pattern):
            if p.is_file() or p.is_symlink():
                p.unlink()
