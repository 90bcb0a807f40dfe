"""Instances: launch, lifecycle actions, modify, delete, exec, console — the business rules, once.

Every front-end (REST, EC2, the CLI through REST) comes through here. A launch is checked whole
— type, limits, name, image, key, zone, quota, the description against the drivers' capabilities
— before any row is written; the rows (instances, their addresses, their operations and locks)
are written in one transaction; the host work then runs as an operation with the description
(`InstanceSpec`) built here once and handed to the node unchanged.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lxcloud.config import Settings
from lxcloud.core.caller import DEFAULT_PROJECT, SYSTEM, Caller
from lxcloud.core.caps import NodeCaps
from lxcloud.core.errors import (
    Conflict,
    Forbidden,
    InvalidCombination,
    InvalidInput,
    InvalidState,
    NotFound,
    QuotaExceeded,
    Reason,
)
from lxcloud.core.firstboot import firstboot_files
from lxcloud.core.host import ExecResult
from lxcloud.core.ids import is_id, new_id, valid_name
from lxcloud.core.instance import (
    ROOT_DEVICE,
    BlockDevice,
    BootOptions,
    Disk,
    InstanceSpec,
    Kind,
    Nic,
    disk_from_dict,
    disk_to_dict,
    nic_from_dict,
    nic_to_dict,
)
from lxcloud.core.instance_types import (
    DEFAULT_TYPE,
    InstanceType,
    Limits,
    get_type,
    resolve_limits,
)
from lxcloud.core.lifecycle import Action, State, next_state, observe
from lxcloud.core.models import Image, Instance, Network, Operation
from lxcloud.core.units import format_size, parse_rate, parse_size
from lxcloud.db.engine import Database
from lxcloud.db.tables import ImageRow, InstanceRow, ProjectRow, table, utcnow
from lxcloud.node.protocol import ConsoleStream, NodeClient
from lxcloud.services import events
from lxcloud.services.capabilities import check_description, check_limits
from lxcloud.services.images import ImageService
from lxcloud.services.keypairs import KeyPairService
from lxcloud.services.networks import NetworkService
from lxcloud.services.operations import Operations, Progress
from lxcloud.services.security_groups import SecurityGroupService
from lxcloud.services.tags import TagService

log = logging.getLogger(__name__)
MAX_USER_DATA = 16 * 1024
DEFAULT_POOL = "default"
LEFT_KEPT = 1000
SHUTDOWN_BEHAVIORS = ("stop", "terminate")


@dataclass(frozen=True)
class NicRequest:
    """One NIC a launch asks for: on `network` (a name or id; the default network when None),
    with the fixed address `ip` or the next free one."""

    network: str | None = None
    ip: str | None = None


@dataclass(frozen=True)
class LaunchRequest:
    """What a front-end asks for. Everything is optional but the image; counts are EC2's
    MinCount/MaxCount (at least min_count or none, at most max_count, one reservation)."""

    image: str
    name: str | None = None
    instance_type: str | None = None
    memory: str | int | None = None
    cpus: float | None = None
    pids: int | None = None
    swap: str | int | None = None
    disk: str | int | None = None   # the root disk's limit; the type's when None
    user_data: str | None = None
    start: bool = True
    key_name: str | None = None
    zone: str | None = None
    client_token: str | None = None
    tags: dict[str, str] | None = None
    min_count: int = 1
    max_count: int = 1
    # EC2: a Name tag is free text; when it is not a free hostname the instance is named by its id
    name_from_tag: bool = False
    boot: BootOptions = field(default_factory=BootOptions)
    block_devices: tuple[BlockDevice, ...] = ()
    network: str | None = None     # the network's name; the default network when None
    # one NIC each, in order (eth0, eth1 …); when empty: one on `network`
    nics: tuple[NicRequest, ...] = ()
    security_groups: tuple[str, ...] = ()   # names or ids; the project's default group when empty
    ingress: str | int | None = None        # bandwidth limits of every NIC ("10Mbit"); the type's
    egress: str | int | None = None
    pool: str | None = None        # the root disk's pool; the default pool when None
    disable_api_termination: bool = False    # termination protection
    shutdown_behavior: str = "stop"          # what a halt from inside means: stop | terminate


# user-facing action -> lifecycle action
ACTIONS: dict[str, Action] = {
    "start": Action.START, "stop": Action.STOP, "reboot": Action.REBOOT, "restart": Action.REBOOT,
    "suspend": Action.SUSPEND, "resume": Action.RESUME,
}


def _to_model(r: Any, image_names: dict[str, str], projects: dict[str, str]) -> Instance:
    """From an ORM row or a Core row of the instances table (same attribute names)."""
    return Instance(
        id=r.id, name=r.name, state=State(r.state), image_id=r.image_id,
        instance_type=r.instance_type, limits=Limits(**(r.limits or {})), node=r.node,
        created=r.created, updated=r.updated, kind=Kind(r.kind or Kind.CONTAINER),
        nics=[nic_from_dict(n) for n in r.nics or ()],
        disks=[disk_from_dict(d) for d in r.disks or ()],
        user_data=r.user_data, state_reason=r.state_reason, launched_at=r.launched_at,
        terminated_at=r.terminated_at, project_id=r.project_id,
        project=projects.get(r.project_id or ""), image_name=image_names.get(r.image_id),
        operation_id=r.operation_id, key_name=r.key_name, zone=r.zone,
        reservation_id=r.reservation_id, client_token=r.client_token,
        launch_index=r.launch_index or 0,
        disable_api_termination=bool(r.disable_api_termination),
        shutdown_behavior=r.shutdown_behavior or "stop")


# The statements of the hot paths (launch, get, exec, every action's end), built once: a
# statement built per call costs several times its execution (SQLAlchemy's coercions and cache
# key); these are bound with parameters instead.
_T = table(InstanceRow)
_LIVE = _T.c.state != str(State.TERMINATED)
# one instance with its image's and project's names, in one Core query (no ORM objects)
_ONE = (select(_T, ImageRow.name.label("image_name"), ProjectRow.name.label("project_name"))
        .outerjoin(ImageRow, ImageRow.id == _T.c.image_id)
        .outerjoin(ProjectRow, ProjectRow.id == _T.c.project_id))
# what exec needs of an instance
_STATE = select(_T.c.id, _T.c.state, _T.c.project_id)


def _by_ref(query: Any) -> tuple[Any, Any]:
    """`query` for one instance by id, and by live name (both bound to `ref`)."""
    return (query.where(_T.c.id == bindparam("ref")),
            query.where(_T.c.name == bindparam("ref"), _LIVE))


_ONE_BY, _STATE_BY = _by_ref(_ONE), _by_ref(_STATE)
_INSERT = _T.insert()
_LIVE_IN_PROJECT = select(func.count()).select_from(_T).where(
    _T.c.project_id == bindparam("project_id"), _LIVE)
_NAME_TAKEN = select(_T.c.id).where(_T.c.name == bindparam("wanted"), _LIVE)
_STATE_BY_ID = select(_T.c.state).where(_T.c.id == bindparam("iid"))
_SET_BY_ID = _T.update().where(_T.c.id == bindparam("iid"))
_DEFAULT_PROJECT = select(ProjectRow.id).where(ProjectRow.name == DEFAULT_PROJECT)


class InstanceService:
    def __init__(self, settings: Settings, db: Database, ops: Operations, node: NodeClient,
                 images: ImageService, networks: NetworkService, tags: TagService,
                 keypairs: KeyPairService) -> None:
        self.settings = settings
        self.db = db
        self.ops = ops
        self.node = node
        self.images = images
        self.networks = networks
        self.tags = tags
        self.keypairs = keypairs
        self._caps: NodeCaps | None = None
        self._default_pid: str | None = None
        # told, in the transaction that terminates an instance, its id (its volumes are
        # detached, its root's snapshots forgotten)
        self.on_terminate: builtins.list[Callable[[Session, str], None]] = []
        # the security groups (set by the cloud): resolve a launch's, push an instance's to its host
        self.security_groups: SecurityGroupService | None = None
        # instances as the operations that ended lately left them (see as_left_by)
        self._left: OrderedDict[str, Instance] = OrderedDict()
        self._mu = threading.Lock()

    def forget_caps(self) -> None:
        """The host's capabilities changed (a pool came or went): asked again when next needed."""
        self._caps = None

    @property
    def caps(self) -> NodeCaps:
        """The node's driver capabilities (they do not change while it runs)."""
        if self._caps is None:
            self._caps = self.node.capabilities()
        return self._caps

    # --- queries
    def get(self, ref: str, *, caller: Caller = SYSTEM) -> Instance:
        """By id (terminated ones included) or by name (live ones). A member sees its project's
        instances only (another project's is "not found", never "forbidden"); an admin every one."""
        row = self._find(ref, caller, _ONE_BY)
        return _to_model(row, {row.image_id: row.image_name} if row.image_name else {},
                         {row.project_id: row.project_name} if row.project_name else {})

    @staticmethod
    def _sees(caller: Caller, project_id: str | None) -> bool:
        return caller is SYSTEM or caller.is_admin or project_id == caller.project_id

    def list(self, include_terminated: bool = False, *, caller: Caller = SYSTEM,
             ids: Sequence[str] | None = None, all_projects: bool = False) -> builtins.list[Instance]:
        """The caller's project's instances; `all_projects` (admins only): every project's."""
        if all_projects and not (caller is SYSTEM or caller.is_admin):
            raise Forbidden("only an admin may list the instances of all projects")
        with self.db.reader() as s:
            # Core rows, not ORM objects: a list of 1,000 is read without identity-map costs
            q = select(InstanceRow.__table__).order_by(InstanceRow.created)
            if caller is not SYSTEM and not all_projects:
                q = q.where(InstanceRow.project_id == caller.project_id)
            if ids is not None:
                q = q.where(InstanceRow.id.in_(list(ids)))
            if not include_terminated:
                q = q.where(InstanceRow.state != State.TERMINATED)
            names, projects = self._image_names(s), self._projects(s)
            return [_to_model(r, names, projects) for r in s.execute(q)]

    def counts(self) -> dict[str, int]:
        """How many instances there are by state (every project)."""
        with self.db.reader() as s:
            return dict(s.execute(select(InstanceRow.state, func.count())  # type: ignore[arg-type]
                                  .group_by(InstanceRow.state)).all())

    @staticmethod
    def _image_names(s: Session) -> dict[str, str]:
        return dict(s.execute(select(ImageRow.id, ImageRow.name)).all())  # type: ignore[arg-type]

    @staticmethod
    def _projects(s: Session) -> dict[str, str]:
        return dict(s.execute(select(ProjectRow.id, ProjectRow.name)).all())  # type: ignore[arg-type]

    # --- launch
    def launch(self, req: LaunchRequest, *, caller: Caller = SYSTEM, dry_run: bool = False
               ) -> builtins.list[tuple[Instance, Operation | None]]:
        """Everything is checked before anything is made; the host work runs as operations.
        A repeated client token returns the first request's instances (no new ones).
        dry_run: every check, nothing made, [] returned."""
        t_start = time.perf_counter()
        if req.min_count < 1 or req.max_count < req.min_count:
            raise InvalidInput("the minimum count must be at least 1 and at most the maximum count")
        if req.client_token:
            earlier = self._by_client_token(req.client_token, caller)
            if earlier:
                return [(i, self.ops.get(i.operation_id) if i.operation_id else None)
                        for i in earlier]
        itype = get_type(req.instance_type or DEFAULT_TYPE)
        limits = resolve_limits(
            itype,
            memory=parse_size(req.memory, "memory") if req.memory is not None else None,
            vcpus=req.cpus, pids=req.pids,
            swap=parse_size(req.swap, "swap") if req.swap is not None else None,
            disk=self._asked_disk(req))
        name = req.name
        if name is not None and not valid_name(name):
            if not req.name_from_tag:
                raise InvalidInput(f"instance name {name!r} is not valid: a letter, then letters, "
                                   "digits or dashes, at most 63 characters")
            name = None
        self._check_user_data(req.user_data)
        self.validate_attributes(shutdown_behavior=req.shutdown_behavior)
        asked = req.nics or (NicRequest(req.network),)
        with self.db.reader() as s:    # what the launch reads, in one read transaction
            image = self.images.get(req.image, caller=caller, session=s)
            nets = [self.networks.get(n.network or "default", caller=caller, session=s)
                    for n in asked]
        self._check_nics(asked, nets, req.max_count)
        self._check_memory(limits, image, itype.name)
        public_keys = [self.keypairs.get(req.key_name, caller).public_key] if req.key_name else []
        first_boot = firstboot_files(req.user_data.encode() if req.user_data is not None else None,
                                     public_keys)
        zone = req.zone or self.settings.zones[0]
        if zone not in self.settings.zones:
            raise InvalidInput(f"invalid availability zone: [{zone}] (this cloud has "
                               f"{', '.join(self.settings.zones)})", resource="zone")
        pool = req.pool or DEFAULT_POOL
        plans = [self.networks.nic_template(net, f"eth{i}") for i, net in enumerate(nets)]
        plans = self._rated(plans, itype, req)
        disks = [Disk(pool=pool, size=limits.disk, source=image.id)]
        check_description(self.caps, kind=image.kind, image=image, nics=plans, disks=disks,
                          boot=req.boot, block_devices=req.block_devices, limits=limits,
                          disk_asked=self._asked_disk(req) is not None)
        if req.tags:
            self.tags.check(req.tags)
        project_id = caller.project_id or self._default_project()
        owner = dataclasses.replace(caller, project_id=project_id)
        rid = new_id("reservation")
        made: builtins.list[tuple[Instance, Operation]] = []
        groups: tuple[str, ...] = ()
        if self.security_groups is not None:   # NotFound for an unknown group, before any row
            with self.db.session() as s:
                groups = self.security_groups.resolve(s, owner, req.security_groups)
        if dry_run:
            with self.db.reader() as s:
                self._room(s, project_id, req.min_count)
            return []
        t_checked = time.perf_counter()
        with self.db.session() as s:
            count = min(req.max_count, self._room(s, project_id, req.min_count))
            for n in range(count):
                iid = new_id("instance")
                wanted = name if count == 1 or name is None else f"{name}-{n}"
                # Core inserts, not ORM objects: the launch path writes its rows without a unit of
                # work (what it writes is known: nothing to load, nothing to diff)
                nics = [replace(self.networks.attach(s, net, plan, iid, n.ip),
                                security_groups=groups)
                        for net, plan, n in zip(nets, plans, asked, strict=True)]
                if self.security_groups is not None:
                    self.security_groups.join(s, iid, groups)
                op = self.ops.begin(s, "launch", iid, project_id=project_id, new=True)
                row = self._insert(
                    s, id=iid, name=self._free_name(s, wanted, iid, req.name_from_tag),
                    image_id=image.id, instance_type=itype.name, kind=str(image.kind),
                    limits=dataclasses.asdict(limits), nics=[nic_to_dict(n) for n in nics],
                    disks=[disk_to_dict(d) for d in disks], user_data=req.user_data,
                    project_id=project_id, operation_id=op.id, key_name=req.key_name, zone=zone,
                    client_token=req.client_token, launch_index=n, reservation_id=rid,
                    disable_api_termination=req.disable_api_termination,
                    shutdown_behavior=req.shutdown_behavior)
                if req.tags:
                    self.tags.add(s, owner, [iid], req.tags)
                made.append((_to_model(SimpleNamespace(**row), {image.id: image.name},
                                       {project_id: owner.project}), op))
        before = {"api.checks": t_checked - t_start, "database.launch": time.perf_counter() - t_checked}
        for inst, op in made:
            spec = self._spec(inst, image, first_boot)
            self._submit_launch(inst, spec, op, {n.id: n for n in nets}, start=req.start,
                                before=before)
        return [(i, o) for i, o in made]

    def _rated(self, plans: Sequence[Nic], itype: InstanceType, req: LaunchRequest
               ) -> builtins.list[Nic]:
        """The NICs with their bandwidth limits: those asked for (on every NIC: one that cannot
        be limited is refused by the capability check), else the type's (where they can be)."""
        ingress = parse_rate(req.ingress, "ingress") if req.ingress is not None else None
        egress = parse_rate(req.egress, "egress") if req.egress is not None else None
        out = []
        for p in plans:
            limitable = (c := self.caps.network.get(p.driver)) is not None and c.rate_limits
            out.append(replace(
                p, ingress=ingress if ingress is not None else itype.ingress if limitable else 0,
                egress=egress if egress is not None else itype.egress if limitable else 0))
        return out

    @staticmethod
    def _check_nics(asked: Sequence[NicRequest], nets: Sequence[Network], count: int) -> None:
        """One NIC per network, a fixed address for one instance only."""
        seen: set[str] = set()
        for n, net in zip(asked, nets, strict=True):
            if net.id in seen:
                raise InvalidInput(f"network {net.name!r} is asked for twice: one NIC per network",
                                   resource="network")
            seen.add(net.id)
            if n.ip is not None and count > 1:
                raise InvalidInput("a fixed address (--ip) is for one instance; this launch asks "
                                   f"for up to {count}", resource="network")

    def _insert(self, s: Session, **values: Any) -> dict[str, Any]:
        """A new instance's row, pending, on this node (Core insert); Conflict when its name was
        taken meanwhile (PostgreSQL: in another transaction)."""
        now = utcnow()
        row: dict[str, Any] = dict(
            state=str(State.PENDING), state_reason=None, node=self.node.name, user_data=None,
            key_name=None, client_token=None, launch_index=0, reservation_id=None,
            created=now, updated=now, launched_at=None, terminated_at=None,
            disable_api_termination=False, shutdown_behavior="stop")
        row.update(values)
        try:
            s.connection().execute(_INSERT, row)
        except IntegrityError:
            raise Conflict(f"an instance named {row['name']!r} already exists",
                           resource="instance") from None
        events.note(s, "instance.created", row["id"], row["name"], row.get("project_id"),
                    {"state": row["state"]})
        return row

    def new_like(self, s: Session, source: Instance, *, name: str | None, op_kind: str,
                 image: Image, pool: str | None = None,
                 limits: Limits | None = None) -> tuple[Instance, Operation]:
        """In the caller's transaction: a new pending instance shaped like `source` (type,
        limits, project, zone, user data, key, root disk size and pool) with its own id, name,
        address and MAC, and its operation `op_kind` (which holds its lock). The quota holds."""
        project_id = source.project_id or self._default_project()
        self._room(s, project_id, 1)
        if name is not None and not valid_name(name):
            raise InvalidInput(f"instance name {name!r} is not valid: a letter, then letters, "
                               "digits or dashes, at most 63 characters")
        nets = [self.networks.by_id(n.network) for n in source.nics] if source.nics \
            else [self.networks.get(session=s)]
        iid = new_id("instance")
        nics = [replace(self.networks.attach(s, net, self.networks.nic_template(net, old.name),
                                             iid),
                        security_groups=old.security_groups, ingress=old.ingress,
                        egress=old.egress)
                for net, old in zip(nets, source.nics or [Nic(network="", mac="", ipv4=None)],
                                    strict=True)]
        if self.security_groups is not None:   # the source's groups that exist here, else default
            groups = self.security_groups.kept(s, project_id,
                                               nics[0].security_groups if nics else ())
            nics = [replace(n, security_groups=groups) for n in nics]
            self.security_groups.join(s, iid, groups)
        op = self.ops.begin(s, op_kind, iid, project_id=project_id, new=True)
        lim = limits or source.limits
        root = Disk(pool=pool or (source.disks[0].pool if source.disks else DEFAULT_POOL),
                    size=lim.disk, source=image.id)
        row = self._insert(
            s, id=iid, name=self._free_name(s, name, iid, False), image_id=image.id,
            instance_type=source.instance_type, kind=str(source.kind),
            limits=dataclasses.asdict(lim), nics=[nic_to_dict(n) for n in nics],
            disks=[disk_to_dict(root)],
            user_data=source.user_data, project_id=project_id, operation_id=op.id,
            key_name=source.key_name, zone=source.zone or self.settings.zones[0])
        return _to_model(SimpleNamespace(**row), {image.id: image.name},
                         {project_id: source.project or ""}), op

    def finish_new(self, s: Session, inst: Instance, op: Operation, *, running: bool) -> None:
        """In the transaction that records a copy's or an import's success: the new instance
        is running (started) or stopped."""
        self._finish(s, inst, op, Action.CREATED if running else Action.STOPPED, launched=True)

    def fail_new(self, inst: Instance, err: Exception, what: str) -> None:
        """A copy or import failed on the host (which undid its work): the record stays, in
        error, its address freed and its name removed from DNS."""
        for nic in inst.nics:
            try:
                self.networks.remove_dns(self.networks.by_id(nic.network), [inst.name])
            except NotFound:
                pass
        with self.db.session() as s:
            r = s.get(InstanceRow, inst.id)
            if r is not None:
                r.state = next_state(r.state, Action.FAIL)
                r.state_reason = f"{what} failed: {err}"
                r.nics = [dict(n, ipv4=None) for n in r.nics or ()]
                self.networks.release(s, inst.id)

    def _room(self, s: Session, project_id: str, at_least: int) -> int:
        """How many more instances the project may have; QuotaExceeded below `at_least`.
        The quota is the same for every front-end."""
        live = s.connection().execute(_LIVE_IN_PROJECT, {"project_id": project_id}).scalar() or 0
        room = self.settings.max_instances_per_project - live
        if room < at_least:
            raise QuotaExceeded(f"your quota allows for {max(room, 0)} more instance(s); you "
                                f"requested at least {at_least}", resource="instances")
        return room

    def _free_name(self, s: Session, wanted: str | None, iid: str, fallback: bool) -> str:
        """`wanted` if no live instance has it (in this transaction); else Conflict, or the id
        when the name only came from a tag."""
        if wanted is None:
            return iid
        taken = s.connection().execute(_NAME_TAKEN, {"wanted": wanted}).scalar()
        if taken is None:
            return wanted
        if fallback:
            return iid
        raise Conflict(f"an instance named {wanted!r} already exists", resource="instance")

    def _submit_launch(self, inst: Instance, spec: InstanceSpec, op: Operation,
                       nets: dict[str, Network], *, start: bool, before: dict[str, float]) -> None:
        """The host work of one launch, as an operation whose result says where the time went
        (step -> milliseconds: the checks and the rows before it, then each host step)."""
        submitted = time.perf_counter()

        def job(progress: Progress) -> dict[str, Any]:
            t0 = time.perf_counter()
            steps = dict(before)
            steps["operation.handoff"] = t0 - submitted
            for nic in spec.nics:   # the name resolves from the moment the instance runs
                self.networks.add_dns(nets[nic.network], nic, spec.name)
            steps["network.dns"] = time.perf_counter() - t0
            if self.security_groups is not None:   # filtered before it first runs
                t1 = time.perf_counter()
                self.security_groups.secure(spec.id, spec.nics)
                steps["network.security_groups"] = time.perf_counter() - t1
            steps.update(self.node.launch(spec, start=start, progress=progress))
            return {"instance_id": inst.id, "ipv4": inst.ipv4,
                    "timings": {k: round(v * 1000, 3) for k, v in steps.items()}}

        def commit(s: Session) -> None:
            self._finish(s, inst, op, Action.CREATED if start else Action.STOPPED, launched=True)

        def on_error(err: Exception) -> None:
            # the agent has undone its host work; the record stays, in error, its address freed
            self.fail_new(inst, err, "launch")

        self.ops.submit(op, job, on_error=on_error, commit=commit)

    def _spec(self, inst: Instance, image: Image, first_boot: Sequence[Any] | None = None
              ) -> InstanceSpec:
        """The description a host gets: the record's devices and limits, the image's boot facts,
        the first-boot files (from the record when not given)."""
        if first_boot is None:
            keys: builtins.list[str] = []
            if inst.key_name:
                try:
                    keys.append(self.keypairs.get(inst.key_name, self._owner_of(inst)).public_key)
                except NotFound:
                    pass   # deleted since: nothing to write (and first-boot files are written once)
            first_boot = firstboot_files(inst.user_data.encode() if inst.user_data is not None
                                         else None, keys)
        return InstanceSpec(id=inst.id, name=inst.name, kind=inst.kind, image=self.images.ref(image),
                            limits=inst.limits, nics=tuple(inst.nics), disks=tuple(inst.disks),
                            first_boot=tuple(first_boot), node=inst.node or self.node.name)

    def spec_of(self, inst: Instance) -> InstanceSpec:
        """The description of `inst` as a host gets it (its image's boot facts, its devices)."""
        return self._spec(inst, self.images.get(inst.image_id))

    @staticmethod
    def _owner_of(inst: Instance) -> Caller:
        return Caller(user_id="system", user="system", project_id=inst.project_id or "",
                      project=inst.project or "")

    @staticmethod
    def _asked_disk(req: LaunchRequest) -> int | None:
        """The root disk size asked for: `disk`, or an EC2 mapping of the root device's size."""
        if req.disk is not None:
            return parse_size(req.disk, "disk")
        for bd in req.block_devices:
            if bd.device_name == ROOT_DEVICE and bd.size is not None and not bd.no_device:
                return bd.size
        return None

    def _check_user_data(self, user_data: str | None) -> None:
        if user_data is not None and len(user_data.encode()) > MAX_USER_DATA:
            raise InvalidInput(f"user data is larger than {MAX_USER_DATA} bytes")

    @staticmethod
    def _check_memory(limits: Limits, image: Image, itype: str) -> None:
        """The least memory an image boots in comes from its metadata."""
        if limits.memory < image.min_memory:
            raise InvalidInput(f"instance type {itype} with {limits.memory >> 20} MiB of memory is "
                               f"too small for image {image.name}: it needs at least "
                               f"{image.min_memory >> 20} MiB", reason=Reason.INVALID_COMBINATION)

    def _by_client_token(self, token: str, caller: Caller) -> builtins.list[Instance]:
        with self.db.reader() as s:
            q = select(InstanceRow).where(InstanceRow.client_token == token)
            if caller is not SYSTEM:
                q = q.where(InstanceRow.project_id == caller.project_id)
            rows = list(s.scalars(q.order_by(InstanceRow.launch_index)))
            names, projects = self._image_names(s), self._projects(s)
            return [_to_model(r, names, projects) for r in rows]

    def _default_project(self) -> str:
        """The default project's id (it is made at start-up and never deleted: read once)."""
        if self._default_pid is None:
            with self.db.reader() as s:
                pid = s.connection().execute(_DEFAULT_PROJECT).scalar()
            if not pid:
                return ""
            self._default_pid = pid
        return self._default_pid

    # --- modify
    def modify(self, ref: str, *, instance_type: str | None = None, user_data: str | None = None,
               caller: Caller = SYSTEM) -> Instance:
        """Instance type and user data change on a stopped instance only."""
        inst = self.get(ref, caller=caller)
        if inst.state != State.STOPPED:
            raise InvalidState(f"the instance {inst.id} is not in the 'stopped' state",
                               state=inst.state)
        self._check_user_data(user_data)
        limits, itype_name = inst.limits, inst.instance_type
        image = self.images.get(inst.image_id)
        if instance_type is not None:
            itype = get_type(instance_type)
            limits = resolve_limits(itype)
            self._check_memory(limits, image, itype.name)
            check_limits(self.caps, inst.kind, limits)
            itype_name = itype.name
        with self.db.session() as s:
            r = s.get(InstanceRow, inst.id)
            if r is None or r.state != State.STOPPED:
                raise InvalidState("the instance is no longer stopped", state=r.state if r else "")
            r.instance_type = itype_name
            r.limits = dataclasses.asdict(limits)
            if user_data is not None:
                r.user_data = user_data
        updated = self.get(inst.id)
        if instance_type is not None:
            self.node.redefine(self._spec(updated, image))
        return updated

    def resize(self, ref: str, disk: str | int, *, caller: Caller = SYSTEM) -> Operation:
        """The root disk's limit becomes `disk`: on a stopped instance, or a running one where
        its pool can; never below what the root holds (the pool refuses, saying how much)."""
        size = parse_size(disk, "disk")
        inst = self.get(ref, caller=caller)
        limits = resolve_limits(get_type(inst.instance_type), memory=inst.limits.memory,
                                vcpus=inst.limits.vcpus, pids=inst.limits.pids,
                                swap=inst.limits.swap, disk=size)
        root = inst.disks[0] if inst.disks else None
        if root is None:
            raise InvalidState(f"instance {inst.name} has no root disk", state=inst.state)
        pool = self.caps.storage.get(root.pool)
        if pool is None or not pool.quota:
            raise InvalidCombination(
                f"pool {root.pool!r} cannot enforce a disk size limit"
                + (f" ({pool.quota_note})" if pool and pool.quota_note else ""),
                capability="quota", pool=root.pool)
        if inst.state == State.RUNNING and not pool.online_resize:
            raise InvalidState(f"pool {root.pool!r} resizes the disk of a stopped instance only: "
                               f"stop {inst.name} first", state=inst.state)
        if inst.state not in (State.STOPPED, State.RUNNING):
            raise InvalidState(f"cannot resize the disk of an instance that is {inst.state}",
                               state=inst.state)
        new_root = dataclasses.replace(root, size=size)
        with self.db.session() as s:
            op = self.ops.begin(s, "resize", inst.id, project_id=inst.project_id)

        def job(progress: Progress) -> None:
            progress(30, f"resizing the root disk to {format_size(size)}")
            self.node.resize_disk(inst.id, new_root)

        def commit(s: Session) -> None:
            r = s.get(InstanceRow, inst.id)
            if r is not None:
                r.limits = dataclasses.asdict(limits)
                r.disks = [disk_to_dict(new_root), *(r.disks or [])[1:]]

        self.ops.submit(op, job, commit=commit)
        return op

    def _finish(self, s: Session, inst: Instance, op: Operation, action: Action, *,
                launched: bool = False) -> None:
        """The state an action's success leads to, in the caller's transaction; the instance as
        it leaves it is remembered for the answer to whoever waits on the operation."""
        conn = s.connection()     # Core statements: this is every action's last step
        state = conn.execute(_STATE_BY_ID, {"iid": inst.id}).scalar()
        if state is None:
            return
        now = utcnow()
        values: dict[str, Any] = {"state": next_state(state, action), "state_reason": None,
                                  "updated": now}
        if launched:
            values["launched_at"] = now
        conn.execute(_SET_BY_ID, {"iid": inst.id, **values})
        events.note_state(s, inst.id, inst.name, inst.project_id, str(state), str(values["state"]))
        self._leave(op, dataclasses.replace(inst, operation_id=op.id, **values))

    def _leave(self, op: Operation, inst: Instance) -> None:
        with self._mu:
            self._left[op.id] = inst
            while len(self._left) > LEFT_KEPT:
                self._left.popitem(last=False)

    def left_by(self, op: Operation, *, caller: Caller = SYSTEM) -> Instance | None:
        """The instance as operation `op` left it when it ended, if this controller ran it
        lately (memory only: for those who waited on it); None otherwise."""
        with self._mu:
            inst = self._left.get(op.id)
        return inst if inst is not None and op.done and self._sees(caller, inst.project_id) \
            else None

    # --- lifecycle
    def _start(self, inst: Instance) -> None:
        """Its security groups (re)applied on its host, then started."""
        if self.security_groups is not None:
            self.security_groups.secure(inst.id, inst.nics)
        self.node.start(inst.id)

    def action(self, ref: str, action: str, *, force: bool = False, timeout: float = 30,
               caller: Caller = SYSTEM) -> Operation:
        if action not in ACTIONS:
            raise InvalidInput(f"unknown action {action!r} (known: {', '.join(sorted(ACTIONS))})")
        act = ACTIONS[action]
        inst = self.get(ref, caller=caller)
        next_state(inst.state, act)   # InvalidState (409) names the current state
        with self.db.session() as s:
            r = s.get(InstanceRow, inst.id)
            if r is None:
                raise NotFound(f"instance {ref!r} not found", resource="instance")
            target_state = next_state(r.state, act)
            op = self.ops.begin(s, action, inst.id, project_id=r.project_id)
            if target_state in (State.PENDING, State.STOPPING, State.REBOOTING):
                r.state = target_state       # transient states show at once
            r.operation_id = op.id

        verbs: dict[Action, tuple[Callable[[], None], Action | None]] = {
            Action.START: (lambda: self._start(inst), Action.CREATED),
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

        def commit(s: Session) -> None:
            if done is not None:
                self._finish(s, inst, op, done)

        def on_error(err: Exception) -> None:
            self.sync_state(inst.id, reason=f"{action} failed: {err}")

        self.ops.submit(op, job, on_error=on_error, commit=commit)
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
        if force:   # a forced delete waits for an operation in flight (a reboot, a stop)
            self.ops.wait_free(inst.id, 120)
        with self.db.session() as s:
            op = self.ops.begin(s, "delete", inst.id, project_id=inst.project_id)
            r = s.get(InstanceRow, inst.id)
            if r is not None:
                r.operation_id = op.id

        def job(progress: Progress) -> None:
            progress(10, "removing the container")
            self.node.destroy(inst.id)
            for nic in inst.nics:
                try:
                    self.networks.remove_dns(self.networks.by_id(nic.network), [inst.name])
                except NotFound:
                    pass

        def commit(s: Session) -> None:
            r = s.get(InstanceRow, inst.id)
            if r is not None:
                r.state = next_state(r.state, Action.TERMINATE)
                r.terminated_at = utcnow()
                self.networks.release(s, inst.id)
                for hook in self.on_terminate:
                    hook(s, inst.id)
                self._leave(op, dataclasses.replace(inst, state=State(r.state), operation_id=op.id,
                                                    terminated_at=r.terminated_at))

        def on_error(err: Exception) -> None:
            self.sync_state(inst.id, reason=f"delete failed: {err}")

        self.ops.submit(op, job, on_error=on_error, commit=commit)
        return op

    # --- interaction
    def exec(self, ref: str, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60,
             env: dict[str, str] | None = None, caller: Caller = SYSTEM) -> ExecResult:
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise InvalidInput("argv must be a non-empty list of non-empty strings")
        if not 0 < timeout <= 3600:
            raise InvalidInput("timeout must be between 0 and 3600 seconds")
        iid, state = self._state_of(ref, caller)
        if state != State.RUNNING:
            raise InvalidState(f"cannot exec in an instance that is {state}", state=state)
        return self.node.exec(iid, list(argv), stdin, timeout, env)

    def _state_of(self, ref: str, caller: Caller) -> tuple[str, str]:
        """(id, state) of the instance `ref` as `get` finds it (same rules), read alone: what
        exec needs, on its way to the host."""
        row = self._find(ref, caller, _STATE_BY)
        return row.id, row.state

    def _find(self, ref: str, caller: Caller, queries: tuple[Any, Any]) -> Any:
        """The row `queries` (by id, by live name: see `_by_ref`) give for `ref`: by id
        (terminated ones too) or by name (live ones), within what the caller sees; NotFound
        otherwise."""
        by_id, by_name = queries
        with self.db.reader() as s:
            conn = s.connection()
            row = conn.execute(by_id, {"ref": ref}).first() if is_id(ref, "instance") else None
            if row is None:
                row = conn.execute(by_name, {"ref": ref}).first()
        if row is None or not self._sees(caller, row.project_id):
            raise NotFound(f"instance {ref!r} not found", resource="instance", id=ref)
        return row

    def console_log(self, ref: str, *, caller: Caller = SYSTEM) -> bytes:
        inst = self.get(ref, caller=caller)
        if inst.state == State.TERMINATED:
            raise InvalidState("the instance is terminated", state=inst.state)
        return self.node.console_log(inst.id)

    def open_console(self, ref: str, *, caller: Caller = SYSTEM) -> tuple[Instance, ConsoleStream]:
        """A terminal on the instance's console: as privileged as exec (it gives a root shell)."""
        inst = self.get(ref, caller=caller)
        if inst.state != State.RUNNING:
            raise InvalidState(f"cannot attach to the console of an instance that is {inst.state}",
                               state=inst.state)
        return inst, self.node.open_console(inst.id)

    def open_exec(self, ref: str, argv: Sequence[str], *,
                  caller: Caller = SYSTEM) -> tuple[Instance, ConsoleStream]:
        """`argv` run inside the instance on a terminal (an interactive exec), as exec is."""
        if not argv or not all(isinstance(a, str) and a and "\0" not in a for a in argv):
            raise InvalidInput("the command must be a non-empty list of non-empty strings")
        inst = self.get(ref, caller=caller)
        if inst.state != State.RUNNING:
            raise InvalidState(f"cannot run a command in an instance that is {inst.state}",
                               state=inst.state)
        return inst, self.node.open_exec(inst.id, list(argv))

    def port_map(self) -> dict[str, builtins.list[Nic]]:
        """Every live instance's NICs on this node (what the port guard must allow)."""
        return {i.id: i.nics for i in self.list() if i.node in (None, self.node.name)}

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
