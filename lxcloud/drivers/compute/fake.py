"""An in-memory ComputeDriver with the LXC driver's contract and state rules, for unit tests."""

from __future__ import annotations

import builtins
import shlex
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from lxcloud.core.caps import ComputeCaps
from lxcloud.core.errors import DriverError, InUse, InvalidCombination, InvalidInput, NotFound
from lxcloud.core.host import ExecResult, HostState
from lxcloud.core.instance import InstanceSpec, Nic
from lxcloud.drivers.compute.base import CgroupDirs, Mount, RootfsSpec


@dataclass
class _Box:
    spec: InstanceSpec
    root: RootfsSpec
    state: HostState = HostState.STOPPED
    pid: int | None = None
    boots: int = 0
    console: bytearray = field(default_factory=bytearray)
    files: dict[str, bytes] = field(default_factory=dict)
    mounts: dict[str, Mount] = field(default_factory=dict)      # target -> mount, while it runs
    defined: tuple[Mount, ...] = ()                             # the definition's mounts
    holders: dict[int, tuple[str, str]] = field(default_factory=dict)   # pid -> (path, command)
    nics: dict[str, Nic] = field(default_factory=dict)          # name -> NIC, while it runs


class FakeDriver:
    """Containers as records. exec understands a few commands: true, false, echo, cat, hostname,
    `exit N` (via sh -c), and `sleep` (which times out when longer than the timeout). Volumes
    hot-plug: `mounted(name)` lists what a running one has mounted, and `hold(name, path, cmd)`
    plays a process inside holding a file open (detach refuses it, naming `cmd`)."""

    name = "fake"
    caps = ComputeCaps(hotplug_disk=True, hotplug_nic=True, max_nics=8)

    def __init__(self, **_: object) -> None:
        self._boxes: dict[str, _Box] = {}
        self._lock = threading.Lock()
        self._next_pid = 1000
        self.calls: list[tuple[str, str]] = []   # (method, name): lets tests check what was done
        self.cgroups: dict[str, CgroupDirs] = {}  # name -> cgroup files a test wrote

    def _get(self, name: str) -> _Box:
        try:
            return self._boxes[name]
        except KeyError:
            raise NotFound(f"container {name} does not exist on this host", resource="instance") from None

    def _boot(self, box: _Box) -> None:
        self._next_pid += 1
        box.pid = self._next_pid
        box.boots += 1
        box.state = HostState.RUNNING
        box.mounts = {m.target: m for m in box.defined}
        box.nics = {n.name: n for n in box.spec.nics}
        box.holders.clear()
        box.console += f"fake: booted {box.spec.name}\n".encode()

    def create(self, spec: InstanceSpec, root: RootfsSpec, mounts: Sequence[Mount] = ()) -> None:
        with self._lock:
            self.calls.append(("create", spec.id))
            box = self._boxes.get(spec.id)
            first = box is None
            if box is None:
                box = self._boxes[spec.id] = _Box(spec=spec, root=root)
            box.spec, box.root, box.defined = spec, root, tuple(mounts)
            box.files["/etc/hostname"] = f"{spec.name}\n".encode()
            if first:
                for f in spec.first_boot:
                    box.files[f.path] = f.content

    def start(self, name: str, timeout: float = 30) -> None:
        with self._lock:
            self.calls.append(("start", name))
            box = self._get(name)
            if box.state is HostState.FROZEN:
                raise DriverError(f"container {name} is frozen; unfreeze it instead of starting it")
            if box.state is HostState.STOPPED:
                self._boot(box)

    def stop(self, name: str, *, force: bool = False, timeout: float = 30) -> None:
        with self._lock:
            self.calls.append(("stop", name))
            box = self._get(name)
            if box.state is not HostState.STOPPED:
                box.console += b"fake: halted\n"
            box.state, box.pid = HostState.STOPPED, None
            box.mounts.clear()
            box.holders.clear()

    def reboot(self, name: str, timeout: float = 30) -> None:
        with self._lock:
            self.calls.append(("reboot", name))
            box = self._get(name)
            if box.state is not HostState.RUNNING:
                raise DriverError(f"container {name} is not running")
            self._boot(box)

    def attach_mount(self, name: str, mount: Mount) -> None:
        with self._lock:
            self.calls.append(("attach_mount", name))
            box = self._get(name)
            if box.state is HostState.STOPPED:
                raise DriverError(f"container {name} is not running")
            box.mounts.setdefault(mount.target, mount)

    def detach_mount(self, name: str, target: str, *, force: bool = False) -> None:
        with self._lock:
            self.calls.append(("detach_mount", name))
            box = self._get(name)
            if target not in box.mounts:
                return
            held = [(pid, cmd) for pid, (path, cmd) in box.holders.items()
                    if path == target or path.startswith(target.rstrip("/") + "/")]
            if held and not force:
                who = ", ".join(f"{cmd} (pid {pid})" for pid, cmd in held)
                raise InUse(f"{target} in {name} is held open by {who}", resource="volume",
                            holders=[cmd for _, cmd in held])
            del box.mounts[target]

    def attach_nic(self, spec: InstanceSpec, nic: Nic) -> None:
        with self._lock:
            self.calls.append(("attach_nic", spec.id))
            box = self._get(spec.id)
            if box.state is HostState.STOPPED:
                raise DriverError(f"container {spec.id} is not running")
            if nic.name not in {n.name for n in spec.nics}:
                raise InvalidInput(f"{spec.id} lists no NIC {nic.name}")
            box.nics.setdefault(nic.name, nic)

    def detach_nic(self, spec: InstanceSpec, nic: Nic) -> None:
        with self._lock:
            self.calls.append(("detach_nic", spec.id))
            self._get(spec.id).nics.pop(nic.name, None)

    def set_rates(self, spec: InstanceSpec, nic: Nic) -> None:
        with self._lock:
            self.calls.append(("set_rates", spec.id))
            box = self._get(spec.id)
            if nic.driver == "macvlan":
                raise InvalidCombination(f"{nic.name} has no host port to limit",
                                         capability="rate_limits")
            if box.state is not HostState.STOPPED:
                box.nics[nic.name] = nic

    def plugged(self, name: str) -> dict[str, Nic]:
        """The NICs a running instance has now, by name."""
        return dict(self._get(name).nics)

    def forget_identity(self, root: RootfsSpec) -> None:
        with self._lock:
            self.calls.append(("forget_identity", str(root.path)))

    def mounted(self, name: str) -> list[str]:
        """The targets a running instance has mounted now."""
        return sorted(self._get(name).mounts)

    def hold(self, name: str, path: str, command: str) -> int:
        """A process `command` inside holds `path` open; its pid."""
        with self._lock:
            box = self._get(name)
            self._next_pid += 1
            box.holders[self._next_pid] = (path, command)
            return self._next_pid

    def release(self, name: str, pid: int) -> None:
        with self._lock:
            self._get(name).holders.pop(pid, None)

    def freeze(self, name: str) -> None:
        with self._lock:
            box = self._get(name)
            if box.state is HostState.STOPPED:
                raise DriverError(f"container {name} is not running")
            box.state = HostState.FROZEN

    def unfreeze(self, name: str) -> None:
        with self._lock:
            box = self._get(name)
            if box.state is HostState.STOPPED:
                raise DriverError(f"container {name} is not running")
            box.state = HostState.RUNNING

    def destroy(self, name: str) -> None:
        with self._lock:
            self.calls.append(("destroy", name))
            self._boxes.pop(name, None)

    def state(self, name: str) -> HostState:
        box = self._boxes.get(name)
        return HostState.MISSING if box is None else box.state

    def list(self) -> list[str]:
        return sorted(self._boxes)

    def init_pid(self, name: str) -> int | None:
        box = self._boxes.get(name)
        return box.pid if box else None

    def cgroup_dirs(self, name: str) -> CgroupDirs | None:
        """`cgroups[name]` when a test gave one (files it writes), None otherwise."""
        return self.cgroups.get(name)

    def port_name(self, name: str, index: int = 0) -> str:
        return f"fk{abs(hash(name)) % 10**10}{index}"

    def exec(self, name: str, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float = 60, env: dict[str, str] | None = None) -> ExecResult:
        box = self._get(name)
        if not argv:
            raise InvalidInput("exec needs a command")
        if box.state is HostState.FROZEN:
            return ExecResult(-9, b"", b"", timed_out=True)
        if box.state is not HostState.RUNNING:
            raise DriverError(f"container {name} is not running")
        args = list(argv)
        if args[:2] == ["sh", "-c"] and len(args) > 2:
            args = shlex.split(args[2])
        cmd, rest = args[0], args[1:]
        if cmd == "true":
            return ExecResult(0, b"", b"")
        if cmd == "false":
            return ExecResult(1, b"", b"")
        if cmd == "exit":
            return ExecResult(int(rest[0]) if rest else 0, b"", b"")
        if cmd == "echo":
            return ExecResult(0, (" ".join(rest) + "\n").encode(), b"")
        if cmd == "cat" and not rest:
            return ExecResult(0, stdin or b"", b"")
        if cmd == "cat" and rest and rest[0] in box.files:
            return ExecResult(0, box.files[rest[0]], b"")
        if cmd == "hostname":
            return ExecResult(0, f"{box.spec.name}\n".encode(), b"")
        if cmd == "sleep":
            if float(rest[0]) > timeout:
                return ExecResult(-9, b"", b"", timed_out=True)
            return ExecResult(0, b"", b"")
        return ExecResult(127, b"", f"sh: {cmd}: not found\n".encode())

    def console_log(self, name: str, max_bytes: int = 1 << 20) -> bytes:
        return bytes(self._get(name).console[-max_bytes:]) if max_bytes > 0 else b""

    def console_command(self, name: str) -> builtins.list[str]:
        self._get(name)
        return ["cat", "/dev/null"]

    def attach_command(self, name: str, argv: Sequence[str]) -> builtins.list[str]:
        self._get(name)
        return ["sh", "-c", 'exec "$@"', "sh", *argv]
