"""Instances: launch, lifecycle actions, delete, exec, console — the business rules, once."""

from __future__ import annotations

import builtins
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from lxcloud.config import Settings
from lxcloud.core import ipam
from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.errors import (
    Conflict,
    InvalidCombination,
    InvalidInput,
    InvalidState,
    NotFound,
    QuotaExceeded,
    Reason,
    Unsupported,
)
from lxcloud.core.ids import is_id, new_id, valid_name
from lxcloud.core.instance_types import DEFAULT_TYPE, Limits, get_type, resolve_limits
from lxcloud.core.lifecycle import Action, State, next_state, observe
from lxcloud.core.models import Instance, Operation
from lxcloud.core.units import parse_size
from lxcloud.db.engine import Database
from lxcloud.db.tables import InstanceRow, utcnow
from lxcloud.drivers.compute.base import ExecResult
from lxcloud.node.protocol import LaunchRequest, NodeClient
from lxcloud.services.images import ImageService
from lxcloud.services.keypairs import KeyPairService
from lxcloud.services.networks import NetworkService
from lxcloud.services.operations import Operations, Progress
from lxcloud.services.tags import TagService

log = logging.getLogger(__name__)
MAX_USER_DATA = 16 * 1024
MiB = 1024**2
SHUTDOWN_BEHAVIORS = ("stop", "terminate")


def min_memory(os_name: str) -> int:
    """The least memory an image's init runs in: systemd images need more than busybox."""
    return 128 * MiB if os_name in ("debian", "ubuntu") else 16 * MiB


def firstboot(user_data: str | None, public_keys: list[str]) -> dict[str, bytes | tuple[bytes, int]]:
    """Files the new root gets: authorized keys, and the user data run once at first boot."""
    from lxcloud.node.firstboot import firstboot_files

    return dict(firstboot_files(user_data.encode() if user_data is not None else None, public_keys))


def _to_model(r: Any, image_name: str | None = None) -> Instance:
    """From an ORM row or a Core row of the instances table (same attribute names)."""
    return Instance(id=r.id, name=r.name, state=r.state, image_id=r.image_id,
                    instance_type=r.instance_type, limits=dict(r.limits or {}), node=r.node,
                    ipv4=r.ipv4, network=r.network, created=r.created, updated=r.updated,
                    user_data=r.user_data, state_reason=r.state_reason, mac=r.mac,
                    launched_at=r.launched_at, terminated_at=r.terminated_at,
                    project_id=r.project_id, image_name=image_name, operation_id=r.operation_id,
                    disable_api_termination=bool(r.disable_api_termination),
                    shutdown_behavior=r.shutdown_behavior or "stop")


@dataclass(frozen=True)
class LaunchInput:
    image: str
    name: str | None = None
    instance_type: str | None = None
    memory: str | int | None = None
    cpus: float | None = None
    pids: int | None = None
    swap: str | int | None = None
    user_data: str | None = None
    start: bool = True
    key_name: str | None = None
    zone: str | None = None
    client_token: str | None = None
    reservation_id: str | None = None
    launch_index: int = 0
    tags: dict[str, str] | None = None


# user-facing action -> (lifecycle action, node verb)
ACTIONS: dict[str, Action] = {
    "start": Action.START, "stop": Action.STOP, "reboot": Action.REBOOT, "restart": Action.REBOOT,
    "suspend": Action.SUSPEND, "resume": Action.RESUME,
}


class InstanceService:
    def __init__(self, settings: Settings, db: Database, ops: Operations, node: NodeClient,
                 images: ImageService, networks: NetworkService, tags: TagService | None = None,
                 keypairs: KeyPairService | None = None) -> None:
        self.tags = tags or TagService(db)
        self.keypairs = keypairs
        self.settings = settings
        self.db = db
        self.ops = ops
        self.node = node
        self.images = images
        self.networks = networks

    # --- queries
    def get(self, ref: str, *, caller: Caller = SYSTEM) -> Instance:
        """By id (terminated ones included) or by name (live ones), within the caller's project:
        another project's instance is "not found", never "forbidden"."""
        with self.db.reader() as s:
            row = s.get(InstanceRow, ref) if is_id(ref, "instance") else None
            if row is None:
                row = s.scalar(select(InstanceRow).where(InstanceRow.name == ref,
                                                         InstanceRow.state != State.TERMINATED)
                               .where(*self._scope(caller)))
            if row is None or not self._sees(caller, row.project_id):
                raise NotFound(f"instance {ref!r} not found", resource="instance", id=ref)
            return _to_model(row, self._image_names(s).get(row.image_id))

    @staticmethod
    def _sees(caller: Caller, project_id: str | None) -> bool:
        return caller is SYSTEM or project_id == caller.project_id

    @staticmethod
    def _scope(caller: Caller) -> list[Any]:
        return [] if caller is SYSTEM else [InstanceRow.project_id == caller.project_id]

    def list(self, include_terminated: bool = False, *, caller: Caller = SYSTEM,
             ids: Sequence[str] | None = None) -> builtins.list[Instance]:
        with self.db.reader() as s:
            # Core rows, not ORM objects: a list of 1,000 is read without identity-map costs
            q = select(InstanceRow.__table__).order_by(InstanceRow.created).where(*self._scope(caller))
            if ids is not None:
                q = q.where(InstanceRow.id.in_(list(ids)))
            if not include_terminated:
                q = q.where(InstanceRow.state != State.TERMINATED)
            names = self._image_names(s)
            return [_to_model(r, names.get(r.image_id)) for r in s.execute(q)]

    @staticmethod
    def _image_names(s: Any) -> dict[str, str]:
        from lxcloud.db.tables import ImageRow

        return dict(s.execute(select(ImageRow.id, ImageRow.name)).all())

    # --- launch
    def launch(self, inp: LaunchInput, *, caller: Caller = SYSTEM) -> tuple[Instance, Operation]:
        """Everything is checked before anything is made; the host work runs as an operation."""
        itype = get_type(inp.instance_type or DEFAULT_TYPE)
        limits = resolve_limits(
            itype,
            memory=parse_size(inp.memory, "memory") if inp.memory is not None else None,
            vcpus=inp.cpus, pids=inp.pids,
            swap=parse_size(inp.swap, "swap") if inp.swap is not None else None)
        if inp.name is not None and not valid_name(inp.name):
            raise InvalidInput(f"instance name {inp.name!r} is not valid: a letter, then letters, "
                               "digits or dashes, at most 63 characters")
        if inp.user_data is not None and len(inp.user_data.encode()) > MAX_USER_DATA:
            raise InvalidInput(f"user data is larger than {MAX_USER_DATA} bytes")
        image = self.images.get(inp.image, caller=caller)
        if image.kind != "container":
            raise Unsupported(f"image {image.name!r} is a {image.kind} image; LXC needs a container "
                              "image", reason=Reason.INVALID_COMBINATION)
        need = min_memory(image.os)
        if limits.memory < need:
            raise InvalidInput(f"instance type {itype.name} has {limits.memory >> 20} MiB of memory; "
                               f"image {image.name} ({image.os}) needs at least {need >> 20} MiB",
                               reason=Reason.INVALID_COMBINATION)
        public_keys: list[str] = []
        if inp.key_name is not None:
            if self.keypairs is None:
                raise Unsupported("key pairs are not available")
            public_keys.append(self.keypairs.get(inp.key_name, caller).public_key)
        net = self.networks.get()
        project_id = caller.project_id or self._default_project()
        iid = new_id("instance")
        name = inp.name or iid
        op_id = self.ops.reserve(iid)
        try:
            with self.db.session() as s:
                if s.scalar(select(InstanceRow.id).where(InstanceRow.name == name,
                                                         InstanceRow.state != State.TERMINATED)):
                    raise Conflict(f"an instance named {name!r} already exists",
                                   resource="instance")
                ip = self.networks.allocate(s, net, iid)
                row = InstanceRow(
                    id=iid, name=name, state=State.PENDING, image_id=image.id,
                    instance_type=itype.name, limits=limits.to_dict(), node=self.node.name,
                    network=net.id, ipv4=ip, mac=ipam.mac_for(ip, self.settings.cloud_id),
                    user_data=inp.user_data, operation_id=op_id,
                    project_id=project_id,
                    key_name=inp.key_name, zone=inp.zone or self.settings.zones[0],
                    client_token=inp.client_token, launch_index=inp.launch_index,
                    reservation_id=inp.reservation_id or new_id("reservation"))
                s.add(row)
                op = self.ops.create("launch", iid, session=s, op_id=op_id)
                inst = _to_model(row, image.name)
        except Exception:
            self.ops.release(iid, op_id)
            raise

        req = LaunchRequest(
            instance_id=iid, hostname=name, image_id=image.id,
            template=self.images.template_path(image), limits=limits, bridge=net.bridge,
            ipv4=f"{ip}/{self.networks.prefix_len(net)}", gateway=net.gateway, mac=inst.mac or "",
            halt_signal=image.halt_signal, nameservers=(net.gateway,), start=inp.start,
            extra_files=firstboot(inp.user_data, public_keys))

        def job(progress: Progress) -> dict[str, Any]:
            self.node.launch(req, progress)
            self._finish(iid, Action.CREATED if inp.start else Action.STOPPED, launched=True)
            self.networks.refresh_dns(net)
            return {"instance_id": iid, "ipv4": ip}

        def on_error(err: Exception) -> None:
            # the agent has undone its host work; the record stays, in error, its address freed
            with self.db.session() as s:
                r = s.get(InstanceRow, iid)
                if r is not None:
                    r.state = next_state(r.state, Action.FAIL)
                    r.state_reason = f"launch failed: {err}"
                    r.ipv4 = None
                    self.networks.release(s, iid)

        if inp.tags:
            self.tags.set(dataclasses.replace(caller, project_id=project_id), [iid], inp.tags)
        self.ops.submit(op, job, on_error=on_error)
        return inst, op

    def launch_many(self, inp: LaunchInput, min_count: int, max_count: int, *,
                    caller: Caller = SYSTEM) -> builtins.list[tuple[Instance, Operation | None]]:
        """EC2's MinCount/MaxCount: at least min_count or none (InstanceLimitExceeded), at most
        max_count; one reservation. A repeated ClientToken returns the first request's instances."""
        if min_count < 1 or max_count < min_count:
            raise InvalidInput("MinCount must be at least 1 and at most MaxCount")
        if inp.client_token:
            earlier = self._by_client_token(inp.client_token, caller)
            if earlier:
                return [(i, self.ops.get(i.operation_id) if i.operation_id else None)
                        for i in earlier]
        room = self.settings.max_instances_per_project - len(self.list(caller=caller))
        if room < min_count:
            raise QuotaExceeded(f"your quota allows for {max(room, 0)} more running instance(s); "
                                f"you requested at least {min_count}", resource="instances")
        count = min(max_count, room)
        rid = inp.reservation_id or new_id("reservation")
        out: builtins.list[tuple[Instance, Operation | None]] = []
        for n in range(count):
            name = inp.name if count == 1 or inp.name is None else f"{inp.name}-{n}"
            one = dataclasses.replace(inp, name=name, reservation_id=rid, launch_index=n)
            out.append(self.launch(one, caller=caller))
        return out

    def _by_client_token(self, token: str, caller: Caller) -> builtins.list[Instance]:
        with self.db.reader() as s:
            rows = s.scalars(select(InstanceRow).where(InstanceRow.client_token == token,
                                                       *self._scope(caller))
                             .order_by(InstanceRow.launch_index))
            names = self._image_names(s)
            return [_to_model(r, names.get(r.image_id)) for r in rows]

    def modify(self, ref: str, *, instance_type: str | None = None, user_data: str | None = None,
               caller: Caller = SYSTEM) -> Instance:
        """Instance type and user data change on a stopped instance only."""
        inst = self.get(ref, caller=caller)
        if inst.state != State.STOPPED:
            raise InvalidState(f"the instance {inst.id} is not in the 'stopped' state",
                               state=inst.state)
        if user_data is not None and len(user_data.encode()) > MAX_USER_DATA:
            raise InvalidInput(f"user data is larger than {MAX_USER_DATA} bytes")
        limits = dict(inst.limits)
        itype_name = inst.instance_type
        if instance_type is not None:
            itype = get_type(instance_type)
            image = self.images.get(inst.image_id)
            if itype.memory < min_memory(image.os):
                raise InvalidInput(f"instance type {itype.name} is too small for image {image.name}",
                                   reason=Reason.INVALID_COMBINATION)
            limits = resolve_limits(itype).to_dict()
            itype_name = itype.name
        with self.db.session() as s:
            r = s.get(InstanceRow, inst.id)
            if r is None or r.state != State.STOPPED:
                raise InvalidState("the instance is no longer stopped", state=r.state if r else "")
            r.instance_type = itype_name
            r.limits = limits
            if user_data is not None:
                r.user_data = user_data
        if instance_type is not None:
            self.node.redefine(self._request(self.get(inst.id)))
        return self.get(inst.id)

    def _request(self, inst: Instance) -> LaunchRequest:
        image = self.images.get(inst.image_id)
        net = self.networks.get()
        return LaunchRequest(
            instance_id=inst.id, hostname=inst.name, image_id=image.id,
            template=self.images.template_path(image), limits=Limits(**inst.limits),
            bridge=net.bridge, ipv4=f"{inst.ipv4}/{self.networks.prefix_len(net)}",
            gateway=net.gateway, mac=inst.mac or "", halt_signal=image.halt_signal,
            nameservers=(net.gateway,), start=False)

    def _default_project(self) -> str:
        from lxcloud.core.caller import DEFAULT_PROJECT
        from lxcloud.db.tables import ProjectRow

        with self.db.reader() as s:
            pid = s.scalar(select(ProjectRow.id).where(ProjectRow.name == DEFAULT_PROJECT))
        return pid or ""

    def _finish(self, iid: str, action: Action, *, launched: bool = False, reason: str | None = None,
                ) -> None:
        with self.db.session() as s:
            r = s.get(InstanceRow, iid)
            if r is None:
                return
            r.state = next_state(r.state, action)
            r.state_reason = reason
            if launched:
                r.launched_at = utcnow()

    # --- lifecycle
    def action(self, ref: str, action: str, *, force: bool = False, timeout: float = 30,
               caller: Caller = SYSTEM) -> Operation:
        if action not in ACTIONS:
            raise InvalidInput(f"unknown action {action!r} (known: {', '.join(sorted(ACTIONS))})")
        act = ACTIONS[action]
        inst = self.get(ref, caller=caller)
        target_state = next_state(inst.state, act)   # InvalidState (409) names the current state
        op_id = self.ops.reserve(inst.id)
        try:
            with self.db.session() as s:
                r = s.get(InstanceRow, inst.id)
                if r is None:
                    raise NotFound(f"instance {ref!r} not found", resource="instance")
                target_state = next_state(r.state, act)
                if target_state in (State.PENDING, State.STOPPING, State.REBOOTING):
                    r.state = target_state       # transient states show at once
                r.operation_id = op_id
                op = self.ops.create(action, inst.id, session=s, op_id=op_id)
        except Exception:
            self.ops.release(inst.id, op_id)
            raise

        verbs: dict[Action, tuple[Callable[[], None], Action | None]] = {
            Action.START: (lambda: self.node.start(inst.id), Action.CREATED),
            Action.STOP: (lambda: self.node.stop(inst.id, force=force, timeout=timeout),
                          Action.STOPPED),
            Action.REBOOT: (lambda: self.node.reboot(inst.id), Action.REBOOTED),
            Action.SUSPEND: (lambda: self.node.freeze(inst.id), Action.SUSPEND),
            Action.RESUME: (lambda: self.node.unfreeze(inst.id), Action.RESUME),
        }
        do, done = verbs[act]

        def job(progress: Progress) -> None:
            progress(10, f"{action} in progress")
            do()
            if done is not None:
                self._finish(inst.id, done)

        def on_error(err: Exception) -> None:
            self.sync_state(inst.id, reason=f"{action} failed: {err}")

        self.ops.submit(op, job, on_error=on_error)
        return op

    def sync_state(self, iid: str, reason: str | None = None) -> str:
        """Make the record's state what the host says (after a failure or on reconcile)."""
        try:
            host = self.node.state(iid)
        except Exception as e:
            host = None
            reason = reason or f"host unreachable: {e}"
        with self.db.session() as s:
            r = s.get(InstanceRow, iid)
            if r is None or r.state == State.TERMINATED:
                return "missing"
            r.state = observe(r.state, host.value if host is not None else None)
            r.state_reason = reason
            if r.state == State.ERROR and not reason:
                r.state_reason = "the container vanished from its host"
            return str(r.state)

    # --- delete
    def delete(self, ref: str, *, force: bool = False, caller: Caller = SYSTEM,
               from_inside: bool = False) -> Operation:
        """Terminates it. Termination protection refuses a delete (Conflict, reason
        TERMINATION_PROTECTED) unless the instance halted itself (`from_inside`), as on EC2."""
        inst = self.get(ref, caller=caller)
        if inst.state == State.TERMINATED:
            raise InvalidState(f"instance {inst.name} is already terminated", state=inst.state)
        if not from_inside:
            self._check_protection(inst)
        if inst.state in (State.RUNNING, State.FROZEN, State.REBOOTING) and not force:
            raise InvalidState(f"instance {inst.name} is {inst.state}: stop it first or use force",
                               state=inst.state)
        # a forced delete waits for an operation in flight (a reboot, a stop) instead of failing
        op_id = self.ops.reserve_after(inst.id, 120) if force else self.ops.reserve(inst.id)
        try:
            op = self.ops.create("delete", inst.id, op_id=op_id)
        except Exception:
            self.ops.release(inst.id, op_id)
            raise

        def job(progress: Progress) -> None:
            progress(10, "removing the container")
            self.node.destroy(inst.id)
            with self.db.session() as s:
                r = s.get(InstanceRow, inst.id)
                if r is not None:
                    r.state = next_state(r.state, Action.TERMINATE)
                    r.terminated_at = utcnow()
                    r.operation_id = op_id
                    self.networks.release(s, inst.id)
            try:
                self.networks.refresh_dns(self.networks.get())
            except NotFound:
                pass

        def on_error(err: Exception) -> None:
            self.sync_state(inst.id, reason=f"delete failed: {err}")

        self.ops.submit(op, job, on_error=on_error)
        return op

    # --- interaction
    def exec(self, ref: str, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60,
             env: dict[str, str] | None = None, caller: Caller = SYSTEM) -> ExecResult:
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise InvalidInput("argv must be a non-empty list of non-empty strings")
        if not 0 < timeout <= 3600:
            raise InvalidInput("timeout must be between 0 and 3600 seconds")
        inst = self.get(ref, caller=caller)
        if inst.state != State.RUNNING:
            raise InvalidState(f"cannot exec in an instance that is {inst.state}", state=inst.state)
        return self.node.exec(inst.id, list(argv), stdin, timeout, env)

    def console_log(self, ref: str, *, caller: Caller = SYSTEM) -> bytes:
        inst = self.get(ref, caller=caller)
        if inst.state == State.TERMINATED:
            raise InvalidState("the instance is terminated", state=inst.state)
        return self.node.console_log(inst.id)

    def console_command(self, ref: str, *,
                        caller: Caller = SYSTEM) -> tuple[Instance, builtins.list[str]]:
        inst = self.get(ref, caller=caller)
        if inst.state != State.RUNNING:
            raise InvalidState(f"cannot attach to the console of an instance that is {inst.state}",
                               state=inst.state)
        return inst, self.node.console_command(inst.id)

    # --- attributes (EC2's instance attributes; REST shows them on the instance)
    def set_attributes(self, ref: str, *, disable_api_termination: bool | None = None,
                       shutdown_behavior: str | None = None, kernel: str | None = None,
                       ramdisk: str | None = None, caller: Caller = SYSTEM) -> Instance:
        """Termination protection and the shutdown behaviour (stop | terminate) change in any state
        but terminated. A kernel or a ramdisk is an InvalidCombination: a container runs on its
        host's kernel and boots no ramdisk. Everything is checked before anything is written."""
        self.validate_attributes(shutdown_behavior=shutdown_behavior, kernel=kernel,
                                 ramdisk=ramdisk)
        inst = self.get(ref, caller=caller)
        with self.db.session() as s:
            r = s.get(InstanceRow, inst.id)
            if r is None or r.state == State.TERMINATED:
                raise InvalidState(f"the instance {inst.id} is terminated", state=State.TERMINATED,
                                   resource="instance")
            if disable_api_termination is not None:
                r.disable_api_termination = disable_api_termination
            if shutdown_behavior is not None:
                r.shutdown_behavior = shutdown_behavior
        return self.get(inst.id)

    @staticmethod
    def validate_attributes(*, shutdown_behavior: str | None = None, kernel: str | None = None,
                            ramdisk: str | None = None) -> None:
        """What set_attributes refuses, checked alone (before a launch that will set them)."""
        for what, value in (("kernel", kernel), ("ramdisk", ramdisk)):
            if value is not None:
                raise InvalidCombination(f"a container instance has no {what} of its own: it runs "
                                         "on its host's kernel", capability=what)
        if shutdown_behavior is not None and shutdown_behavior not in SHUTDOWN_BEHAVIORS:
            raise InvalidInput(f"shutdown behaviour {shutdown_behavior!r} is not one of "
                               f"{', '.join(SHUTDOWN_BEHAVIORS)}")

    def check_deletable(self, refs: Sequence[str], *, caller: Caller = SYSTEM) -> None:
        """All of these instances may be deleted by this caller now (for a batch that must delete
        all or none): termination protection refuses, naming the first protected one."""
        for ref in refs:
            self._check_protection(self.get(ref, caller=caller))

    @staticmethod
    def _check_protection(inst: Instance) -> None:
        if inst.disable_api_termination and inst.state != State.TERMINATED:
            raise Conflict(f"The instance '{inst.id}' may not be terminated. Modify its "
                           "'disableApiTermination' instance attribute and try again.",
                           resource="instance", reason=Reason.TERMINATION_PROTECTED, id=inst.id)

    def halted_from_inside(self, iid: str) -> Operation | None:
        """Called when the instance's own init halted it (the reconciler saw a running instance
        stop by itself, and recorded it stopped): with the 'terminate' shutdown behaviour it is
        terminated, termination protection notwithstanding (as on EC2); with 'stop' it stays
        stopped. Returns the delete operation, if one was started."""
        inst = self.get(iid)
        if inst.shutdown_behavior != "terminate" or inst.state != State.STOPPED:
            return None
        log.info("instance %s halted itself; its shutdown behaviour is terminate", iid)
        return self.delete(iid, force=True, from_inside=True)
