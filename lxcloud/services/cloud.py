"""The controller's service container: builds the services over one database and node client."""

from __future__ import annotations

import logging

from lxcloud.config import Settings
from lxcloud.db.engine import Database
from lxcloud.node.protocol import NodeClient
from lxcloud.services.accounts import AccountService
from lxcloud.services.addresses import AddressService
from lxcloud.services.auth import controller_id, ensure_admin_token, ensure_secret
from lxcloud.services.copies import CopyService
from lxcloud.services.doctor import DoctorService
from lxcloud.services.events import Events
from lxcloud.services.images import ImageService
from lxcloud.services.instances import InstanceService
from lxcloud.services.keypairs import KeyPairService
from lxcloud.services.metadata import MetadataService
from lxcloud.services.metrics import MetricsService
from lxcloud.services.networks import NetworkService
from lxcloud.services.nics import NicService
from lxcloud.services.nodes import NodeService
from lxcloud.services.operations import Operations
from lxcloud.services.pools import PoolService
from lxcloud.services.reconciler import Reconciler
from lxcloud.services.security_groups import SecurityGroupService
from lxcloud.services.snapshots import SnapshotService
from lxcloud.services.tags import TagService
from lxcloud.services.volumes import VolumeService

log = logging.getLogger(__name__)


class Cloud:
    def __init__(self, settings: Settings, node: NodeClient, db: Database | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.db = db or Database(settings.db_url)
        self.db.create_all()
        self.node = node
        self.controller_id = controller_id(settings)
        self.ops = Operations(self.db, owner=self.controller_id, workers=settings.workers)
        self.events = Events(self.db, node=node.name, keep=settings.events_kept)
        self.ops.on_start.append(self.events.operation_started)
        self.ops.on_finish.append(self.events.operation_finished)
        self.accounts = AccountService(self.db)
        self.networks = NetworkService(settings, self.db, node)
        self.pools = PoolService(settings, self.db, node)
        self.images = ImageService(settings, self.db, self.ops, node)
        self.tags = TagService(self.db)
        self.keypairs = KeyPairService(self.db)
        self.instances = InstanceService(settings, self.db, self.ops, node, self.images,
                                         self.networks, self.tags, self.keypairs)
        self.security_groups = SecurityGroupService(self.db, node)
        self.security_groups.instance_of = lambda ref, who: self.instances.get(ref, caller=who)
        self.instances.security_groups = self.security_groups
        self.instances.on_terminate.append(self.security_groups.leave)
        self.metadata = MetadataService(self.db, self.instances, self.images, self.keypairs,
                                        self.networks)
        self.nodes = NodeService(self.db, node)
        self.reconciler = Reconciler(self.db, self.ops, node)
        self.reconciler.on_halt = self.instances.halted_from_inside
        self.reconciler.on_correct.append(self.events.corrected)
        self.events.instance_of = lambda ref, who: self.instances.get(ref, caller=who).id
        self.events.project_of = lambda ref: self.accounts.project(ref).id
        self.pools.on_change.append(self.instances.forget_caps)
        self.volumes = VolumeService(settings, self.db, self.ops, node, self.pools, self.tags)
        self.volumes.instances = self.instances
        self.snapshots = SnapshotService(self.db, self.ops, node, self.pools, self.instances,
                                         self.volumes, self.tags)
        self.instances.on_terminate += [self.volumes.release_instance,
                                        self.snapshots.forget_instance]
        self.copies = CopyService(settings, self.db, self.ops, node, self.instances, self.images,
                                  self.networks, self.snapshots)
        self.addresses = AddressService(settings, self.db, node, self.instances, self.tags)
        self.instances.on_terminate.append(self.addresses.release_instance)
        self.nics = NicService(settings, self.db, self.ops, node, self.instances, self.networks)
        self.nics.on_detach.append(self.addresses.release_nic)
        self.doctor = DoctorService(settings, node, self.networks, self.addresses)
        self.metrics = MetricsService(settings, node, self.instances.list,
                                      counts=self.instances.counts,
                                      publish=self.events.publish)
        self.instances.on_terminate.append(self._forget_metrics)
        self.admin_token = ""
        # signs EC2 pagination tokens; kept in the data dir so they outlive a restart
        self.ec2_token_secret = ensure_secret(settings.ec2_token_secret_file)

    def startup(self, *, reconcile_loop: bool = True) -> None:
        """Host prepared, default network made or repaired, records reconciled with the host."""
        self.node.prepare()
        self.admin_token = ensure_admin_token(self.settings)
        self.admin = self.accounts.ensure_admin(self.admin_token)
        self.admin_key = self.accounts.credentials("admin")
        interrupted = self.ops.fail_interrupted()
        if interrupted:
            log.warning("%d operation(s) were interrupted by a restart", interrupted)
        self.nodes.register_local()
        self.pools.ensure_all()
        self.copies.expire_exports()
        nets = self.networks.ensure_all()
        ports = self.instances.port_map()
        self.node.sync_ports(ports)
        self.security_groups.sync_host(ports)
        rep = self.reconciler.run_once(startup=True)
        self.nodes.unknown = rep.unknown
        for net in nets:
            self.networks.refresh_dns(net)
        self.addresses.sync()
        if reconcile_loop and self.settings.reconcile_interval > 0:
            self.reconciler.start(self.settings.reconcile_interval)
        if self.settings.metrics_interval > 0:
            self.metrics.start()

    def _forget_metrics(self, _session: object, instance_id: str) -> None:
        self.metrics.forget(instance_id)

    def public_url(self) -> str:
        """Where clients reach this cloud's API (written by `lxcloud up`)."""
        f = self.settings.url_file
        if f.exists():
            return f.read_text().strip()
        return f"http://{self.settings.listen}"

    def reconcile(self) -> None:
        rep = self.reconciler.run_once()
        self.nodes.unknown = rep.unknown

    def close(self) -> None:
        self.metrics.stop()
        self.reconciler.stop()
        self.ops.shutdown()
        self.events.close()
        self.db.close()
