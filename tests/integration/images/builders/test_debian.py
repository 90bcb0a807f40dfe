"""The debootstrap builder makes a safe, container-ready Debian template (real debootstrap, real mirror).

Built once per (release, arch, variant, builder source) and cached under /var/cache/lxcloud-test/,
so later runs only re-check the archive. One container is started here, to see what its image
promises a user: the console is a root shell, ssh takes no password.
"""

from __future__ import annotations

import hashlib
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lxcloud.cli.terminal import strip_terminal
from lxcloud.core.errors import InvalidInput
from lxcloud.drivers.compute.lxc import LxcDriver
from lxcloud.drivers.storage.dir import DirPool
from lxcloud.images.builders import common, debian
from lxcloud.images.unpack import ArchiveInfo, check_archive, open_archive, safe_extract
from tests.integration.conftest import BridgeNet, debian_launcher, wait_for

CACHE = Path("/var/cache/lxcloud-test")
DEBS = CACHE / "debs"
STALE_AFTER = 86400   # seconds unused before an image of another builder is removed


def _builder_key() -> str:
    """Changes whenever the builder changes, so a stale cached image is never tested."""
    h = hashlib.sha256()
    for mod in (debian, common):
        h.update(Path(mod.__file__ or "").read_bytes())
    return h.hexdigest()[:12]


@dataclass
class Built:
    path: Path
    info: ArchiveInfo
    lines: list[str] = field(default_factory=list)  # empty when the cached tarball was reused


def _build(release: str, arch: str, cloud_init: bool) -> Built:
    variant = "cloud" if cloud_init else "base"
    out = CACHE / f"debian-{release}-{arch}-{variant}-{_builder_key()}.tar.zst"
    if out.exists():
        os.utime(out)   # in use: see below
        return Built(out, check_archive(out))
    # Built by another builder: gone once unused for a day. (Not at once: worktrees of other
    # builder versions on this machine use the cache too, maybe at this very moment.)
    for stale in CACHE.glob(f"debian-{release}-{arch}-{variant}-*.tar.zst"):
        if stale.stat().st_mtime < time.time() - STALE_AFTER:
            stale.unlink(missing_ok=True)
    lines: list[str] = []
    info = debian.build_debian(out, release=release, arch=arch, cloud_init=cloud_init,
                               progress=lines.append, cache_dir=DEBS)
    return Built(out, info, lines)


@pytest.fixture(scope="module")
def base() -> Built:
    return _build("bookworm", "amd64", False)


@pytest.fixture(scope="module")
def cloud() -> Built:
    return _build("bookworm", "amd64", True)


@dataclass
class Tree:
    """The archive's own view of itself: kinds, symlink targets and small file contents."""

    kinds: dict[str, str]
    links: dict[str, str]
    files: dict[str, bytes]

    def resolve(self, path: str) -> str:
        parts, done, hops = path.strip("/").split("/"), [], 0
        while parts:
            p = parts.pop(0)
            cur = "/".join([*done, p])
            if cur in self.links:
                hops += 1
                assert hops < 40, path
                target = self.links[cur]
                if target.startswith("/"):
                    done = []
                parts = [x for x in target.split("/") if x] + parts
            elif p == "..":
                done = done[:-1]
            elif p not in ("", "."):
                done.append(p)
        return "/".join(done)


def read_tree(path: Path, want: tuple[str, ...]) -> Tree:
    kinds, links, files = {}, {}, {}
    with open_archive(path) as tf:
        for m in tf:
            name = m.name.removeprefix("./").rstrip("/")
            kinds[name] = "d" if m.isdir() else "l" if m.issym() else "f" if m.isreg() else "o"
            if m.issym():
                links[name] = m.linkname
            if m.isreg() and name in want:
                f = tf.extractfile(m)
                assert f is not None
                files[name] = f.read()
    return Tree(kinds, links, files)


WANT = ("etc/shadow", "etc/hostname", "etc/machine-id", "etc/resolv.conf",
        "etc/systemd/system/lxcloud-ssh-keygen.service", "etc/cloud/cloud.cfg.d/90-lxcloud.cfg")


def test_base_image_is_safe_and_bootable(base: Built) -> None:
    info = check_archive(base.path)  # a full independent pass: hostile entries would raise
    assert info.format == "tar.zst" and info.sha256 == base.info.sha256
    # Guessed from the archive itself, not copied from the builder's claims:
    assert (info.os, info.release, info.architecture) == ("debian", "bookworm", "amd64")
    assert (info.init, info.halt_signal) == ("/sbin/init", "SIGRTMIN+3")
    assert info.skipped == 0  # no device nodes shipped
    assert 50_000_000 < info.unpacked_size < 400_000_000
    if base.lines:
        assert any(line.startswith("I: Retrieving") or line.startswith("I: Validating")
                   or line.startswith("I: Extracting") for line in base.lines)

    t = read_tree(base.path, WANT)
    assert t.resolve("sbin/init") == "usr/lib/systemd/systemd"
    assert t.kinds["usr/lib/systemd/systemd"] == "f"
    assert t.kinds[t.resolve("usr/sbin/sshd")] == "f"
    assert t.kinds[t.resolve("bin/ip")] == "f"
    assert not [n for n in t.kinds if n.startswith("etc/ssh/ssh_host_")], "host keys must not ship"
    assert "ssh-keygen -A" in t.files["etc/systemd/system/lxcloud-ssh-keygen.service"].decode()
    assert t.links["etc/systemd/system/ssh.service.wants/lxcloud-ssh-keygen.service"].endswith(
        "lxcloud-ssh-keygen.service")
    assert t.files["etc/machine-id"] == b""
    assert t.files["etc/hostname"] == b""
    assert b"nameserver" not in t.files["etc/resolv.conf"]  # not the build host's
    root = next(ln for ln in t.files["etc/shadow"].decode().splitlines() if ln.startswith("root:"))
    assert root.split(":")[1].startswith("!"), root
    for unit in debian.MASKED_UNITS:
        assert t.links.get(f"etc/systemd/system/{unit}") == "/dev/null", unit
    # Nothing that would take eth0 away from LXC's static configuration.
    for n in ("usr/sbin/dhclient", "sbin/dhclient", "usr/sbin/ifup", "sbin/ifup", "etc/network/interfaces"):
        assert n not in t.kinds, n
    assert not any(n.startswith("var/cache/apt/archives/") and n.endswith(".deb") for n in t.kinds)


def test_base_image_extracts_shifted(base: Built, tmp_path: Path) -> None:
    dest = tmp_path / "rootfs"
    info = safe_extract(base.path, dest, uid_shift=100000, gid_shift=100000)
    assert info.sha256 == base.info.sha256
    # Absolute links point into the container's root, not the host's: check them as links.
    assert os.readlink(dest / "sbin") == "usr/sbin"
    assert os.readlink(dest / "usr/sbin/init") in ("/lib/systemd/systemd", "../lib/systemd/systemd")
    assert (dest / "usr/lib/systemd/systemd").is_file()
    st = os.stat(dest / "usr/bin/passwd")
    assert (st.st_uid, st.st_mode & 0o4000) == (100000, 0o4000)  # setuid survives the chown
    assert os.lstat(dest / "sbin").st_uid == 100000
    assert dest.stat().st_uid == 100000
    shadow = os.stat(dest / "etc/shadow")
    assert shadow.st_gid == 100000 + 42  # group "shadow" keeps its id, shifted


def test_cloud_init_image(cloud: Built) -> None:
    info = check_archive(cloud.path)
    assert (info.os, info.architecture, info.init) == ("debian", "amd64", "/sbin/init")
    t = read_tree(cloud.path, WANT)
    assert t.kinds[t.resolve("usr/bin/cloud-init")] == "f"
    assert t.kinds.get("usr/lib/locale/locale-archive") == "f"  # pre-generated, no first-boot locale-gen
    cfg = t.files["etc/cloud/cloud.cfg.d/90-lxcloud.cfg"].decode()
    assert "network: {config: disabled}" in cfg
    # isc-dhcp-client comes with cloud-init, but nothing runs it on eth0.
    assert "etc/network/interfaces" not in t.kinds
    assert not [n for n in t.kinds if n.startswith("etc/ssh/ssh_host_")]


def test_i386_image() -> None:
    built = _build("bookworm", "i386", False)
    info = check_archive(built.path)
    assert (info.os, info.architecture) == ("debian", "i386")  # from the ELF headers
    assert info.halt_signal == "SIGRTMIN+3"


def test_build_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out" / "never.tar.zst"
    with pytest.raises(Exception) as ei:
        # An unknown suite: debootstrap fails after starting; the work dir must go.
        debian.build_debian(out, release="nosuchrelease", cache_dir=DEBS)
    assert "debootstrap" in str(ei.value) or "nosuchrelease" in str(ei.value)
    assert list(out.parent.iterdir()) == []


def test_bad_arch_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        debian.build_debian(tmp_path / "x.tar.zst", arch="vax")
    assert not list(tmp_path.iterdir())


def test_apt_mirror_is_an_http_debian_uri() -> None:
    m = common.apt_mirror()
    assert m.startswith(("http://", "https://")) and "security" not in m



def _sh(d: LxcDriver, name: str, script: str, timeout: float = 30) -> tuple[int, str]:
    r = d.exec(name, ["sh", "-c", script], timeout=timeout)
    return r.exit_code, r.stdout.decode() + r.stderr.decode()


PROMPT = re.compile(r"root@[\w.-]+:[^\n]*# $")


def _console(argv: list[str], command: bytes, answer: str, timeout: float) -> str:
    """Attach `argv` (lxc-console) on a pty, wait for a root shell's prompt (asking for a fresh one
    with a CR), type `command` and read until `answer` shows; returns all that was seen, as text.
    select() with one deadline: reacts to what the console says, never sleeps."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    seen, typed = "", False
    deadline = time.monotonic() + timeout
    try:
        os.write(fd, b"\r")
        while answer not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {answer!r} on the console within {timeout}s: {seen[-800:]!r}")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            seen += strip_terminal(data.decode(errors="replace"))
            if not typed and PROMPT.search(seen):
                os.write(fd, command)
                typed = True
        os.write(fd, b"\x01q")            # lxc-console's detach: Ctrl-a q
        return seen
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)


def test_console_is_a_root_shell_and_ssh_takes_no_password(
        base: Built, lxc_driver: LxcDriver, dir_pool: DirPool, bridge: BridgeNet,
        request: pytest.FixtureRequest) -> None:
    spec = debian_launcher(lxc_driver, dir_pool, bridge, base.path, request)(memory=256 << 20)
    d = lxc_driver

    def booted() -> str:
        _, out = _sh(d, spec.name, "systemctl is-system-running --wait", timeout=120)
        last = out.strip().splitlines()[-1] if out.strip() else ""
        return last if last in ("running", "degraded") else ""

    wait_for(booted, 120, "systemd to finish booting")
    # the console (`lxc-console -t 0`: /dev/console, served by console-getty) logs root in
    argv = d.console_command(spec.name)
    assert argv[argv.index("-t") + 1] == "0"
    assert _sh(d, spec.name, "systemctl is-active console-getty.service") == (0, "active\n")
    seen = _console(argv, b"echo uid=$(id -u)=end\r", "uid=0=end", 60)
    assert "login:" not in seen and "Password:" not in seen, seen
    # typed on root's own prompt, answered by a shell whose uid is 0
    assert re.search(r"^root@[\w.-]+:~# echo uid=\$\(id -u\)=end$", seen, re.M), seen
    assert re.search(r"^uid=0=end$", seen, re.M), seen

    # ...while root's password stays locked and sshd takes keys only
    code, shadow = _sh(d, spec.name, "cut -d: -f1,2 /etc/shadow | grep ^root:")
    assert code == 0 and shadow.startswith("root:!"), shadow
    code, cfg = _sh(d, spec.name, "sshd -T | grep -E '^(permitrootlogin|passwordauthentication|"
                                  "kbdinteractiveauthentication) '")
    assert sorted(cfg.split("\n")[:3]) == ["kbdinteractiveauthentication no",
                                            "passwordauthentication no",
                                            "permitrootlogin without-password"], cfg
    ip = spec.nics[0].ipv4.split("/")[0]

    def listening() -> bool:
        try:
            with socket.create_connection((ip, 22), timeout=2):
                return True
        except OSError:
            return False

    wait_for(listening, 60, "sshd on port 22")
    ssh = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
         "-o", "ConnectTimeout=20", f"root@{ip}", "true"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    # the server offers public keys only: a password is never even asked for
    assert ssh.returncode == 255 and "Permission denied (publickey)." in ssh.stderr, ssh.stderr
