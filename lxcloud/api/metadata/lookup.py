"""Finding what a metadata request may see: the metadata service asks the services, and shows
their answer in EC2's terms (account ids, architectures, zones)."""

from __future__ import annotations

from lxcloud.api.ec2.common import account_id, ec2_arch
from lxcloud.api.ec2.vpc import default_vpc_id, subnet_id
from lxcloud.api.metadata.app import Lookup, MetadataView
from lxcloud.services.cloud import Cloud


def make_lookup(c: Cloud) -> Lookup:
    def lookup(ip: str) -> MetadataView | None:
        found = c.metadata.identity(ip)
        if found is None:
            return None
        i = found.instance
        nic = next((n for n in i.nics if n.ipv4 == ip), None)
        return MetadataView(
            instance_id=i.id, hostname=i.name, local_ipv4=ip, mac=nic.mac if nic else "",
            instance_type=i.instance_type, ami_id=i.image_id,
            availability_zone=i.zone or c.settings.zones[0], region=c.settings.region,
            reservation_id=i.reservation_id or "r-" + i.id[2:], public_keys=found.public_keys,
            user_data=i.user_data.encode() if i.user_data is not None else None,
            launch_index=i.launch_index, account_id=account_id(i.project_id or ""),
            subnet_cidr=found.subnet_cidr, architecture=ec2_arch(found.architecture),
            pending_time=i.launched_at or i.created, public_ipv4=found.public_ipv4,
            security_groups=c.security_groups.names_of(i.id),
            interface_id=nic.id if nic else "",
            subnet_id=subnet_id(nic.network) if nic else "",
            vpc_id=default_vpc_id(i.project_id or "") if nic else "",
            device_number=nic.index if nic else 0)
    return lookup
