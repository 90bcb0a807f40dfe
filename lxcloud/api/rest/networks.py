"""REST: /api/v1/networks — a project's networks (and the shared ones)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.core.caller import Caller
from lxcloud.core.models import Network
from lxcloud.services.cloud import Cloud
from lxcloud.services.networks import NetworkRequest, NetworkUpdate

router = APIRouter(prefix="/api/v1/networks", tags=["networks"])


class NetworkCreate(BaseModel):
    name: str
    subnet: str = Field(description='"10.20.0.0/24"')
    mode: str = Field("nat", description="nat (egress NAT), routed (no NAT) or isolated "
                                         "(reaches nothing outside)")
    dns_domain: str = Field("", description="instances resolve as NAME.DOMAIN (default: lxcloud)")
    gateway: str | None = Field(None, description="the host's address on it (default: the first)")
    dhcp_range: str | None = Field(None, description='"A-B": the addresses instances get')
    driver: str = Field("bridge", description="bridge or macvlan")
    parent: str = Field("", description="macvlan: the host interface whose segment it joins")
    macvlan_mode: str = Field("", description="macvlan: private, bridge or vepa")
    shared: bool = Field(False, description="an admin's network every project may use")
    host_ports: list[str] = Field(default_factory=list,
                                  description='what instances may reach on the host beyond DHCP, '
                                              'DNS and metadata: ["tcp/22"]')
    description: str = ""


class NetworkPatch(BaseModel):
    mode: str | None = None
    dns_domain: str | None = None
    dhcp_range: str | None = Field(None, description='"A-B"; "" clears it')
    host_ports: list[str] | None = None
    description: str | None = None


class NetworkOut(BaseModel):
    id: str
    name: str
    subnet: str
    cidr: str
    gateway: str
    mode: str
    driver: str
    bridge: str
    parent: str
    macvlan_mode: str
    dns_domain: str
    dhcp_range: str | None
    host_ports: list[str]
    shared: bool
    project: str | None
    project_id: str | None
    description: str
    instances: list[str] | None = Field(None, description="the instances on it (show only)")
    created: datetime

    @classmethod
    def of(cls, n: Network, instances: list[str] | None = None) -> NetworkOut:
        return cls(id=n.id, name=n.name, subnet=n.cidr, cidr=n.cidr, gateway=n.gateway,
                   mode=n.mode, driver=n.driver, bridge=n.bridge, parent=n.parent,
                   macvlan_mode=n.macvlan_mode, dns_domain=n.dns_domain,
                   dhcp_range=f"{n.dhcp_start}-{n.dhcp_end}" if n.dhcp_start else None,
                   host_ports=n.host_ports, shared=n.shared, project=n.project,
                   project_id=n.project_id, description=n.description, instances=instances,
                   created=n.created)


@router.get("", response_model=list[NetworkOut])
def list_networks(all_projects: bool = Query(False, description="admin: every project's"),
                  c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[NetworkOut]:
    return [NetworkOut.of(n) for n in c.networks.list(who, all_projects=all_projects)]


@router.post("", status_code=201, response_model=NetworkOut)
def create_network(body: NetworkCreate, c: Cloud = Depends(cloud),
                   who: Caller = Depends(caller)) -> NetworkOut:
    req = NetworkRequest(name=body.name, subnet=body.subnet, mode=body.mode,
                         dns_domain=body.dns_domain, gateway=body.gateway,
                         dhcp_range=body.dhcp_range, driver=body.driver, parent=body.parent,
                         macvlan_mode=body.macvlan_mode, shared=body.shared,
                         host_ports=tuple(body.host_ports), description=body.description)
    return NetworkOut.of(c.networks.create(who, req))


@router.get("/{ref}", response_model=NetworkOut)
def get_network(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> NetworkOut:
    n = c.networks.get(ref, caller=who)
    return NetworkOut.of(n, [name for _, name in c.networks.users(n)])


@router.patch("/{ref}", response_model=NetworkOut)
def update_network(ref: str, body: NetworkPatch, c: Cloud = Depends(cloud),
                   who: Caller = Depends(caller)) -> NetworkOut:
    change = NetworkUpdate(mode=body.mode, dns_domain=body.dns_domain,
                           dhcp_range=body.dhcp_range,
                           host_ports=tuple(body.host_ports) if body.host_ports is not None
                           else None, description=body.description)
    return NetworkOut.of(c.networks.update(who, ref, change))


@router.delete("/{ref}", status_code=204)
def delete_network(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    c.networks.delete(who, ref)
    return Response(status_code=204)
