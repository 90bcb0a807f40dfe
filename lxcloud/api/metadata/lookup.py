"""Finding the instance behind a metadata request: its address on the cloud's network."""

from __future__ import annotations

import logging

from sqlalchemy import select

from lxcloud.api.ec2.common import account_id, ec2_arch
from lxcloud.api.metadata.app import Lookup, MetadataView
from lxcloud.db.tables import ImageRow, InstanceRow, KeyPairRow
from lxcloud.services.cloud import Cloud

log = logging.getLogger(__name__)


def make_lookup(c: Cloud) -> Lookup:
    def lookup(ip: str) -> MetadataView | None:
        with c.db.reader() as s:
            r = s.scalar(select(InstanceRow).where(InstanceRow.ipv4 == ip,
                                                   InstanceRow.state != "terminated"))
            if r is None:
                return None
            keys: dict[str, str] = {}
            if r.key_name:
                k = s.scalar(select(KeyPairRow).where(KeyPairRow.project_id == r.project_id,
                                                      KeyPairRow.name == r.key_name))
                if k is not None:
                    keys[k.name] = k.public_key
            img = s.get(ImageRow, r.image_id)
            net = c.networks.get()
            return MetadataView(
                instance_id=r.id, hostname=r.name, local_ipv4=ip, mac=r.mac or "",
                instance_type=r.instance_type, ami_id=r.image_id,
                availability_zone=r.zone or c.settings.zones[0], region=c.settings.region,
                reservation_id=r.reservation_id or "r-" + r.id[2:], public_keys=keys,
                user_data=r.user_data.encode() if r.user_data is not None else None,
                launch_index=r.launch_index or 0, account_id=account_id(r.project_id or ""),
                subnet_cidr=net.cidr,
                architecture=ec2_arch(img.architecture if img else None),
                pending_time=r.launched_at or r.created)
    return lookup
