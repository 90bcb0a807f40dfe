"""One dnsmasq per network: DNS for instance names (<name>.lxcloud) and static-only DHCP.

Instances get their address statically from LXC (the database's allocation is authoritative); DHCP
only serves the same address, from a static host list, to images that ask for one anyway. dnsmasq is
daemonized so it outlives the agent; a restarted agent finds it again by its pid file and
/proc/<pid>/cmdline, and restarts it only if its command line no longer matches the network.

Each host has a file of its own in two directories dnsmasq watches with inotify (--hostsdir,
--dhcp-hostsdir): adding or removing one instance's name writes or unlinks one small file, and
dnsmasq picks it up by itself — no signal, no rewrite of every name on the network. Files are
written under a dot name (dnsmasq ignores those) and renamed into place.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

from lxcloud.core.errors import DriverError, InvalidInput
from lxcloud.core.ipam import NetworkPlan
from lxcloud.core.proc import run
from lxcloud.core.waiting import wait_until
from lxcloud.drivers.network.base import NetworkSpec

log = logging.getLogger(__name__)

DOMAIN = "lxcloud"
DNSMASQ = "dnsmasq"
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass(frozen=True)
class DnsmasqPaths:
    """Every file one network's dnsmasq uses; all under the run dir the caller gives."""

    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "dnsmasq.pid"

    @property
    def hosts_dir(self) -> Path:       # --hostsdir: one file per host, "address name.domain name"
        return self.run_dir / "hosts.d"

    @property
    def dhcp_dir(self) -> Path:        # --dhcp-hostsdir: one file per host, its static allocation
        return self.run_dir / "dhcp.d"

    @property
    def leases(self) -> Path:
        return self.run_dir / "dnsmasq.leases"

    def all(self) -> list[Path]:
        """Every file (not directory) we or dnsmasq made, older layouts' included."""
        return [self.pid_file, self.leases, self.run_dir / "dnsmasq.hosts",
                self.run_dir / "dnsmasq.dhcp-hosts"]


def host_nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The host's upstream resolvers, in order; [] when there is no resolv.conf."""
    try:
        text = resolv_conf.read_text()
    except OSError:
        return []
    servers = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                ipaddress.ip_address(parts[1].split("%")[0])
            except ValueError:
                continue
            servers.append(parts[1])
    return servers


def _others_can_read(path: Path) -> bool:
    """True if an unprivileged user can reach files in path (every ancestor is o+x)."""
    p = path.resolve()
    for d in [p, *p.parents]:
        try:
            if not d.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _pid_alive_cmdline(pid: int) -> list[str] | None:
    """The argv of a live (non-zombie) process, None when gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:   # a zombie or a kernel thread
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def _exited(pid: int) -> bool:
    """The process is gone or a zombie. (Not "its cmdline is empty": the kernel drops a dying
    process's memory, and so its cmdline, before its files — its sockets are still bound then.)"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    # dnsmasq drops to an unprivileged user: it must still read these.
    tmp.chmod(0o644)
    os.replace(tmp, path)


class DnsmasqSupervisor:
    """Starts, finds, reloads and stops the dnsmasq of one network per run dir. Stateless."""

    def __init__(self, *, dhcp: bool = True, user: str | None = None,
                 resolv_conf: Path = Path("/etc/resolv.conf"), lease_time: str = "1h") -> None:
        """user None: "nobody" when the run dir is reachable by others, else root (with a warning)."""
        self.dhcp = dhcp
        self.user = user
        self.resolv_conf = resolv_conf
        self.lease_time = lease_time

    def argv(self, spec: NetworkSpec, run_dir: Path) -> list[str]:
        """The exact dnsmasq command line for spec (also how a running one is recognised)."""
        paths = DnsmasqPaths(Path(run_dir).resolve())
        plan = NetworkPlan.from_cidr(spec.cidr)
        domain = spec.dns_domain or DOMAIN
        user = self.user or ("nobody" if _others_can_read(paths.run_dir) else "root")
        argv = [DNSMASQ, "--conf-file=/dev/null", f"--pid-file={paths.pid_file}",
                f"--interface={spec.bridge}", "--bind-interfaces", "--except-interface=lo",
                f"--user={user}", "--no-hosts", f"--hostsdir={paths.hosts_dir}", "--expand-hosts",
                f"--domain={domain}", f"--local=/{domain}/", "--no-resolv", "--strict-order",
                "--no-negcache"]
        argv += [f"--server={s}" for s in host_nameservers(self.resolv_conf) if s != spec.gateway]
        if self.dhcp:
            argv += [f"--dhcp-range={plan.first},static,{plan.netmask},{self.lease_time}",
                     f"--dhcp-hostsdir={paths.dhcp_dir}", f"--dhcp-leasefile={paths.leases}",
                     "--dhcp-authoritative", "--dhcp-no-override",
                     f"--dhcp-option=option:router,{spec.gateway}", "--quiet-dhcp"]
        return argv

    def running_pid(self, run_dir: Path) -> int | None:
        """The pid of this run dir's dnsmasq if it is alive (checked against /proc), else None."""
        paths = DnsmasqPaths(Path(run_dir).resolve())
        try:
            pid = int(paths.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        cmd = _pid_alive_cmdline(pid)
        if cmd and os.path.basename(cmd[0]) == DNSMASQ and f"--pid-file={paths.pid_file}" in cmd:
            return pid
        return None

    def ensure(self, spec: NetworkSpec, run_dir: Path) -> int:
        """Start the network's dnsmasq unless the right one already runs; returns its pid.

        The bridge must exist with its address (bind-interfaces binds to it). A dnsmasq started for
        an older version of spec (other cidr, servers …) is replaced.
        """
        run_dir = Path(run_dir).resolve()
        if not Path("/sys/class/net", spec.bridge).exists():
            raise DriverError(f"dnsmasq: bridge {spec.bridge} does not exist")
        run_dir.mkdir(parents=True, exist_ok=True)
        argv = self.argv(spec, run_dir)
        pid = self.running_pid(run_dir)
        if pid is not None:
            if _pid_alive_cmdline(pid) == argv:
                return pid
            log.info("dnsmasq %s: configuration changed, restarting", pid)
            self._kill(pid)
        paths = DnsmasqPaths(run_dir)
        for d in (paths.hosts_dir, paths.dhcp_dir):   # kept: the entries of a previous run
            d.mkdir(exist_ok=True)
            d.chmod(0o755)        # dnsmasq drops to an unprivileged user: it must still read them
        paths.pid_file.unlink(missing_ok=True)
        # dnsmasq reports start-up errors (address in use, bad option) through its exit code
        # before the daemon detaches, so run() raising is reliable.
        run(argv, timeout=30)
        # the daemon writes its pid file right after detaching
        return wait_until(lambda: self.running_pid(run_dir), 5,
                          f"dnsmasq for {spec.bridge} writing {paths.pid_file}")

    def update_hosts(self, run_dir: Path, entries: dict[str, str],
                     macs: dict[str, str] | None = None) -> None:
        """The network's DNS and DHCP know exactly these hosts (name → address): files of hosts
        not listed are removed. macs (name → MAC), when given, pins DHCP by MAC; otherwise DHCP
        matches the client's hostname. InvalidInput for a name that is not a DNS label or a bad
        address (before anything is written)."""
        paths = self._paths(run_dir)
        files = self._files(entries, macs or {})
        for d in (paths.hosts_dir, paths.dhcp_dir):
            for f in d.iterdir():
                if f.name not in entries and not f.name.startswith("."):
                    f.unlink(missing_ok=True)
        self._write(paths, files)

    def add_hosts(self, run_dir: Path, entries: dict[str, str],
                  macs: dict[str, str] | None = None) -> None:
        """These hosts are added (or their address changed); the others stay as they are."""
        paths = DnsmasqPaths(Path(run_dir))
        files = self._files(entries, macs or {})
        try:
            self._write(paths, files)
        except FileNotFoundError:    # no dnsmasq was ever set up here: make its directories
            self._write(self._paths(run_dir), files)

    def remove_hosts(self, run_dir: Path, names: list[str]) -> None:
        """These hosts are forgotten. Unknown names: no-op."""
        paths = DnsmasqPaths(Path(run_dir))
        for name in names:
            if _NAME_RE.match(name):
                (paths.hosts_dir / name).unlink(missing_ok=True)
                (paths.dhcp_dir / name).unlink(missing_ok=True)

    def hosts(self, run_dir: Path) -> dict[str, str]:
        """The hosts the network's DNS knows (name → address), from their files."""
        out = {}
        d = self._paths(run_dir).hosts_dir
        for f in sorted(d.iterdir()) if d.is_dir() else []:
            if not f.name.startswith("."):
                parts = f.read_text().split()
                if parts:
                    out[f.name] = parts[0]
        return out

    @staticmethod
    def _paths(run_dir: Path) -> DnsmasqPaths:
        paths = DnsmasqPaths(Path(run_dir).resolve())
        for d in (paths.hosts_dir, paths.dhcp_dir):
            d.mkdir(parents=True, exist_ok=True)
        return paths

    @staticmethod
    def _files(entries: dict[str, str], macs: dict[str, str]) -> dict[str, tuple[str, str]]:
        """name -> (its hosts line, its DHCP line), every value checked."""
        out = {}
        for name, ip in sorted(entries.items()):
            if not _NAME_RE.match(name):
                raise InvalidInput(f"{name!r} is not a valid host name")
            try:
                ipaddress.IPv4Address(ip)
            except ValueError:
                raise InvalidInput(f"{ip!r} is not an IPv4 address (host {name})") from None
            mac = macs.get(name)
            if mac is not None and not _MAC_RE.match(mac):
                raise InvalidInput(f"{mac!r} is not a MAC address (host {name})")
            # a bare name: --expand-hosts adds the network's domain
            out[name] = (f"{ip} {name}\n",
                         f"{mac},{ip},{name}\n" if mac else f"{name},{ip}\n")
        return out

    @staticmethod
    def _write(paths: DnsmasqPaths, files: dict[str, tuple[str, str]]) -> None:
        for name, (hosts_line, dhcp_line) in files.items():
            for d, text in ((paths.hosts_dir, hosts_line), (paths.dhcp_dir, dhcp_line)):
                f = d / name
                try:
                    if f.read_text() == text:
                        continue
                except FileNotFoundError:
                    pass
                _write_atomic(f, text)

    def stop(self, run_dir: Path) -> None:
        """Stop the network's dnsmasq and remove every file it or we made. Missing: no-op."""
        paths = DnsmasqPaths(Path(run_dir).resolve())
        pid = self.running_pid(paths.run_dir)
        if pid is not None:
            self._kill(pid)
        for f in paths.all():
            f.unlink(missing_ok=True)
            f.with_name(f".{f.name}.tmp").unlink(missing_ok=True)
        for d in (paths.hosts_dir, paths.dhcp_dir):
            shutil.rmtree(d, ignore_errors=True)

    @staticmethod
    def _kill(pid: int, timeout: float = 5.0) -> None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            try:   # dnsmasq is not our child: no waitpid, its /proc entry tells
                wait_until(lambda: _exited(pid), wait, f"dnsmasq {pid} exiting")
                return
            except DriverError:
                continue
        raise DriverError(f"dnsmasq {pid} does not die")
