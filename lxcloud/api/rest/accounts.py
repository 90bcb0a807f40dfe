"""REST: projects, users and their credentials (admins manage; a user may read its own keys)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.core.caller import Caller
from lxcloud.core.errors import Forbidden
from lxcloud.services.accounts import User
from lxcloud.services.cloud import Cloud

router = APIRouter(prefix="/api/v1", tags=["accounts"])


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class ProjectOut(BaseModel):
    id: str
    name: str
    created: datetime


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    project: str
    role: str = "member"


class UserOut(BaseModel):
    id: str
    name: str
    project: str
    project_id: str
    role: str
    created: datetime

    @classmethod
    def of(cls, u: User) -> UserOut:
        return cls(id=u.id, name=u.name, project=u.project, project_id=u.project_id, role=u.role,
                   created=u.created)


class UserCreated(BaseModel):
    user: UserOut
    token: str


class CredentialsOut(BaseModel):
    user: str
    access_key_id: str
    secret_access_key: str
    region: str
    endpoint_url: str


class WhoamiOut(BaseModel):
    user_id: str
    user: str
    project_id: str
    project: str
    role: str
    is_admin: bool


def _admin(who: Caller) -> None:
    if not who.is_admin:
        raise Forbidden("only an admin may manage projects and users")


@router.get("/whoami", response_model=WhoamiOut)
async def whoami(who: Caller = Depends(caller)) -> WhoamiOut:
    """Who the token belongs to (the dashboard's login checks a token with it)."""
    return WhoamiOut(user_id=who.user_id, user=who.user, project_id=who.project_id,
                     project=who.project, role=who.role, is_admin=who.is_admin)


@router.get("/projects", response_model=list[ProjectOut])
def list_projects(c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[ProjectOut]:
    _admin(who)
    return [ProjectOut(id=p.id, name=p.name, created=p.created) for p in c.accounts.list_projects()]


@router.post("/projects", status_code=201, response_model=ProjectOut)
def create_project(body: ProjectIn, c: Cloud = Depends(cloud),
                   who: Caller = Depends(caller)) -> ProjectOut:
    _admin(who)
    p = c.accounts.create_project(body.name)
    return ProjectOut(id=p.id, name=p.name, created=p.created)


@router.get("/users", response_model=list[UserOut])
def list_users(c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[UserOut]:
    _admin(who)
    return [UserOut.of(u) for u in c.accounts.list_users()]


@router.post("/users", status_code=201, response_model=UserCreated)
def create_user(body: UserIn, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> UserCreated:
    _admin(who)
    user, token = c.accounts.create_user(body.name, body.project, body.role)
    return UserCreated(user=UserOut.of(user), token=token)


@router.get("/users/{name}/credentials", response_model=CredentialsOut)
def credentials(name: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> CredentialsOut:
    user = c.accounts.user(name)
    if not who.is_admin and user.id != who.user_id:
        raise Forbidden("a user may only read its own credentials")
    key = c.accounts.credentials(user.name)
    return CredentialsOut(user=user.name, access_key_id=key.access_key_id,
                          secret_access_key=key.secret_access_key, region=c.settings.region,
                          endpoint_url=f"{c.public_url()}/ec2/")
