"""REST: /api/v1/security-groups (groups and their rules) and an instance's groups
(/api/v1/instances/{id}/security-groups)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, Field

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.core.caller import Caller
from lxcloud.services.cloud import Cloud
from lxcloud.services.security_groups import GroupRule, RuleSpec, SecurityGroup

router = APIRouter(prefix="/api/v1/security-groups", tags=["security-groups"])
instance_router = APIRouter(prefix="/api/v1/instances", tags=["security-groups"])


class GroupCreate(BaseModel):
    name: str
    description: str = ""


class RuleIn(BaseModel):
    """tcp/udp: port_from..port_to (none: all); icmp: port_from = type, port_to = code (-1: any);
    cidr or source_group (a group name or id), anywhere when neither."""

    direction: str = Field(description="ingress | egress")
    protocol: str = Field("all", description="tcp | udp | icmp | all")
    port_from: int | None = None
    port_to: int | None = None
    cidr: str | None = None
    source_group: str | None = None
    description: str = ""

    def spec(self) -> RuleSpec:
        return RuleSpec(self.direction, self.protocol, self.port_from, self.port_to, self.cidr,
                        self.source_group, self.description)


class RuleOut(BaseModel):
    id: str
    direction: str
    protocol: str
    port_from: int | None
    port_to: int | None
    cidr: str | None
    source_group: str | None
    source_group_name: str | None
    description: str

    @classmethod
    def of(cls, r: GroupRule) -> RuleOut:
        return cls(id=r.id, direction=r.direction, protocol=r.protocol, port_from=r.port_from,
                   port_to=r.port_to, cidr=r.cidr, source_group=r.source_group,
                   source_group_name=r.source_group_name, description=r.description)


class GroupOut(BaseModel):
    id: str
    name: str
    description: str
    project_id: str
    created: datetime
    rules: list[RuleOut]
    instances: list[str]

    @classmethod
    def of(cls, g: SecurityGroup) -> GroupOut:
        return cls(id=g.id, name=g.name, description=g.description, project_id=g.project_id,
                   created=g.created, rules=[RuleOut.of(r) for r in g.rules],
                   instances=g.instances)


class InstanceGroupsIn(BaseModel):
    groups: list[str] = Field(description="group names or ids (at least one)")


@router.post("", status_code=201, response_model=GroupOut)
def create_group(body: GroupCreate, c: Cloud = Depends(cloud),
                 who: Caller = Depends(caller)) -> GroupOut:
    return GroupOut.of(c.security_groups.create(body.name, who, body.description))


@router.get("", response_model=list[GroupOut])
def list_groups(c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[GroupOut]:
    return [GroupOut.of(g) for g in c.security_groups.list(who)]


@router.get("/{ref}", response_model=GroupOut)
def show_group(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> GroupOut:
    return GroupOut.of(c.security_groups.get(ref, who))


@router.delete("/{ref}", status_code=204)
def delete_group(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    g = c.security_groups.get(ref, who)
    c.security_groups.delete(g.id, who)
    c.tags.forget(g.id)
    return Response(status_code=204)


@router.post("/{ref}/rules", status_code=201, response_model=GroupOut)
def add_rule(ref: str, body: RuleIn, c: Cloud = Depends(cloud),
             who: Caller = Depends(caller)) -> GroupOut:
    """Add a rule; running instances in the group see it at once. 409 when it is there."""
    return GroupOut.of(c.security_groups.add_rules(ref, [body.spec()], who))


@router.delete("/{ref}/rules", response_model=GroupOut)
def remove_rule(ref: str, body: RuleIn, c: Cloud = Depends(cloud),
                who: Caller = Depends(caller)) -> GroupOut:
    """Remove the rule the body describes (404 when the group has no such rule)."""
    return GroupOut.of(c.security_groups.remove_rules(ref, [body.spec()], who))


@instance_router.get("/{ref}/security-groups", response_model=list[GroupOut])
def instance_groups(ref: str, c: Cloud = Depends(cloud),
                    who: Caller = Depends(caller)) -> list[GroupOut]:
    inst = c.instances.get(ref, caller=who)
    ids = [gid for gid, _ in c.security_groups.of_instances(who, [inst.id])[inst.id]]
    owner = replace(who, project_id=inst.project_id or who.project_id)   # an admin's look
    return [GroupOut.of(g) for g in c.security_groups.list(owner, ids=ids)] if ids else []


@instance_router.put("/{ref}/security-groups", response_model=list[GroupOut])
def set_instance_groups(ref: str, body: InstanceGroupsIn, c: Cloud = Depends(cloud),
                        who: Caller = Depends(caller)) -> list[GroupOut]:
    """The instance's groups become these, applied at once to it on its host."""
    return [GroupOut.of(g) for g in c.security_groups.set_instance_groups(ref, body.groups, who)]
