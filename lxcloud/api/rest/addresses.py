"""REST: /api/v1/addresses (allocate, list, show, associate, disassociate, release),
/api/v1/address-pools (admins) and /api/v1/port-forwards, over the address service."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.core.addresses import AddressPool, PortForward, PublicAddress
from lxcloud.core.caller import Caller
from lxcloud.services.cloud import Cloud

addresses = APIRouter(prefix="/api/v1/addresses", tags=["addresses"])
pools = APIRouter(prefix="/api/v1/address-pools", tags=["addresses"])
forwards = APIRouter(prefix="/api/v1/port-forwards", tags=["addresses"])


class PoolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1)
    interface: str = Field(..., min_length=1, description="the host interface the addresses "
                                                          "live on")
    range: str = Field(..., description="A-B (two IPv4 addresses), or a CIDR")
    cidr: str | None = Field(None, description="the network of the range (the interface's "
                                               "when omitted)")
    gateway: str | None = Field(None, description="an address of the range never handed out")


class PoolOut(BaseModel):
    id: str
    name: str
    interface: str
    cidr: str
    range_start: str
    range_end: str
    gateway: str
    size: int
    allocated: int
    created: datetime

    @classmethod
    def of(cls, p: AddressPool) -> PoolOut:
        return cls(id=p.id, name=p.name, interface=p.interface, cidr=p.cidr,
                   range_start=p.range_start, range_end=p.range_end, gateway=p.gateway,
                   size=p.size, allocated=p.allocated, created=p.created)


class AllocateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool: str | None = Field(None, description="the pool's name or id (any pool with a free "
                                               "address when omitted)")
    address: str | None = Field(None, description="this address of a pool")
    name: str | None = Field(None, description="a name for it (its Name tag)")


class AssociateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance: str = Field(..., min_length=1, description="instance name or id")
    private_ip: str | None = Field(None, description="which of its NICs' addresses (the first "
                                                     "NIC's when omitted)")
    allow_reassociation: bool = Field(False, description="take it from another instance")


class AddressOut(BaseModel):
    id: str
    address: str
    name: str | None
    pool: str
    interface: str
    associated: bool
    instance_id: str | None
    instance: str | None
    nic: str | None
    private_ip: str | None
    association_id: str | None
    forwards: int
    project_id: str
    tags: dict[str, str]
    created: datetime

    @classmethod
    def of(cls, a: PublicAddress) -> AddressOut:
        return cls(id=a.id, address=a.address, name=a.name, pool=a.pool, interface=a.interface,
                   associated=a.associated, instance_id=a.instance_id, instance=a.instance_name,
                   nic=a.nic, private_ip=a.private_ip, association_id=a.association_id,
                   forwards=a.forwards, project_id=a.project_id, tags=a.tags, created=a.created)


class ForwardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str = Field(..., min_length=1, description="the public address (IP, id or name)")
    protocol: str = Field("tcp", description="tcp | udp")
    port: int = Field(..., ge=1, le=65535)
    instance: str = Field(..., min_length=1, description="instance name or id")
    target_port: int | None = Field(None, ge=1, le=65535, description="the instance's port "
                                                                      "(`port` when omitted)")
    private_ip: str | None = None


class ForwardOut(BaseModel):
    id: str
    address_id: str | None
    address: str
    protocol: str
    port: int
    instance_id: str
    instance: str | None
    nic: str
    private_ip: str | None
    target_port: int
    project_id: str
    created: datetime

    @classmethod
    def of(cls, f: PortForward) -> ForwardOut:
        return cls(id=f.id, address_id=f.address_id, address=f.address, protocol=f.protocol,
                   port=f.port, instance_id=f.instance_id, instance=f.instance_name, nic=f.nic,
                   private_ip=f.private_ip, target_port=f.target_port, project_id=f.project_id,
                   created=f.created)


# --- pools
@pools.get("", response_model=list[PoolOut])
def list_pools(c: Cloud = Depends(cloud)) -> list[PoolOut]:
    return [PoolOut.of(p) for p in c.addresses.list_pools()]


@pools.post("", status_code=201, response_model=PoolOut)
def create_pool(body: PoolIn, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> PoolOut:
    return PoolOut.of(c.addresses.create_pool(body.name, body.interface, body.range,
                                              cidr=body.cidr, gateway=body.gateway, caller=who))


@pools.get("/{ref}", response_model=PoolOut)
def get_pool(ref: str, c: Cloud = Depends(cloud)) -> PoolOut:
    return PoolOut.of(c.addresses.get_pool(ref))


@pools.delete("/{ref}", status_code=204)
def delete_pool(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    c.addresses.delete_pool(ref, caller=who)
    return Response(status_code=204)


# --- addresses
@addresses.get("", response_model=list[AddressOut])
def list_addresses(all_projects: bool = Query(False, description="every project's (admins only)"),
                   c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[AddressOut]:
    return [AddressOut.of(a) for a in c.addresses.list(caller=who, all_projects=all_projects)]


@addresses.post("", status_code=201, response_model=AddressOut)
def allocate(body: AllocateIn | None = None, c: Cloud = Depends(cloud),
             who: Caller = Depends(caller)) -> AddressOut:
    body = body or AllocateIn(pool=None, address=None, name=None)
    return AddressOut.of(c.addresses.allocate(
        pool=body.pool, address=body.address, tags={"Name": body.name} if body.name else None,
        caller=who))


@addresses.get("/{ref}", response_model=AddressOut)
def get_address(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> AddressOut:
    return AddressOut.of(c.addresses.get(ref, caller=who))


@addresses.post("/{ref}/associate", response_model=AddressOut)
def associate(ref: str, body: AssociateIn, c: Cloud = Depends(cloud),
              who: Caller = Depends(caller)) -> AddressOut:
    return AddressOut.of(c.addresses.associate(ref, body.instance, private_ip=body.private_ip,
                                               allow_reassociation=body.allow_reassociation,
                                               caller=who))


@addresses.post("/{ref}/disassociate", response_model=AddressOut)
def disassociate(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> AddressOut:
    return AddressOut.of(c.addresses.disassociate(ref, caller=who))


@addresses.delete("/{ref}", status_code=204)
def release(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    c.addresses.release(ref, caller=who)
    return Response(status_code=204)


# --- port forwards
@forwards.get("", response_model=list[ForwardOut])
def list_forwards(address: str | None = Query(None, description="only those of this address"),
                  instance: str | None = Query(None, description="only those to this instance"),
                  c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[ForwardOut]:
    return [ForwardOut.of(f) for f in c.addresses.list_forwards(caller=who, address=address,
                                                               instance=instance)]


@forwards.post("", status_code=201, response_model=ForwardOut)
def add_forward(body: ForwardIn, c: Cloud = Depends(cloud),
                who: Caller = Depends(caller)) -> ForwardOut:
    return ForwardOut.of(c.addresses.add_forward(body.address, body.protocol, body.port,
                                                 body.instance, target_port=body.target_port,
                                                 private_ip=body.private_ip, caller=who))


@forwards.get("/{forward_id}", response_model=ForwardOut)
def get_forward(forward_id: str, c: Cloud = Depends(cloud),
                who: Caller = Depends(caller)) -> ForwardOut:
    return ForwardOut.of(c.addresses.get_forward(forward_id, caller=who))


@forwards.delete("/{forward_id}", status_code=204)
def remove_forward(forward_id: str, c: Cloud = Depends(cloud),
                   who: Caller = Depends(caller)) -> Response:
    c.addresses.remove_forward(forward_id, caller=who)
    return Response(status_code=204)
