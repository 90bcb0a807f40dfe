"""Projects (tenants), users, their API tokens and EC2 access keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from lxcloud.core.caller import DEFAULT_PROJECT, Caller
from lxcloud.core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from lxcloud.core.ids import new_id
from lxcloud.db.engine import Database
from lxcloud.db.tables import AccessKeyRow, ProjectRow, TokenRow, UserRow

NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,63}$")
ROLES = ("admin", "member")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    created: datetime


@dataclass(frozen=True)
class User:
    id: str
    name: str
    project_id: str
    project: str
    role: str
    created: datetime


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str
    user: str
    created: datetime


def new_access_key_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "LXCK" + "".join(secrets.choice(alphabet) for _ in range(16))


class AccountService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, Caller] = {}     # token hash -> caller
        self._mu = threading.Lock()

    # --- projects
    def create_project(self, name: str) -> Project:
        if not NAME_RE.match(name):
            raise InvalidInput(f"project name {name!r} is not valid")
        with self.db.session() as s:
            if s.scalar(select(ProjectRow.id).where(ProjectRow.name == name)):
                raise Conflict(f"a project named {name!r} already exists", resource="project")
            row = ProjectRow(id=new_id("project"), name=name)
            s.add(row)
            s.flush()
            return Project(row.id, row.name, row.created)

    def list_projects(self) -> list[Project]:
        with self.db.reader() as s:
            return [Project(r.id, r.name, r.created) for r in s.scalars(select(ProjectRow))]

    def project(self, ref: str) -> Project:
        with self.db.reader() as s:
            row = s.get(ProjectRow, ref) or s.scalar(select(ProjectRow).where(ProjectRow.name == ref))
            if row is None:
                raise NotFound(f"project {ref!r} not found", resource="project")
            return Project(row.id, row.name, row.created)

    # --- users
    def create_user(self, name: str, project: str, role: str = "member") -> tuple[User, str]:
        """The user and a new API token for it (shown once: only its hash is kept)."""
        if not NAME_RE.match(name):
            raise InvalidInput(f"user name {name!r} is not valid")
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        proj = self.project(project)
        token = secrets.token_urlsafe(32)
        with self.db.session() as s:
            if s.scalar(select(UserRow.id).where(UserRow.name == name)):
                raise Conflict(f"a user named {name!r} already exists", resource="user")
            row = UserRow(id=new_id("user"), name=name, project_id=proj.id, role=role)
            s.add(row)
            s.add(TokenRow(sha256=_hash(token), name=name, role=role, user_id=row.id))
            s.flush()
            user = User(row.id, row.name, proj.id, proj.name, row.role, row.created)
        return user, token

    def user(self, ref: str) -> User:
        with self.db.reader() as s:
            row = s.get(UserRow, ref) or s.scalar(select(UserRow).where(UserRow.name == ref))
            if row is None:
                raise NotFound(f"user {ref!r} not found", resource="user")
            proj = s.get(ProjectRow, row.project_id)
            return User(row.id, row.name, row.project_id, proj.name if proj else "", row.role,
                        row.created)

    def list_users(self) -> list[User]:
        with self.db.reader() as s:
            projects = {p.id: p.name for p in s.scalars(select(ProjectRow))}
            return [User(r.id, r.name, r.project_id, projects.get(r.project_id, ""), r.role, r.created)
                    for r in s.scalars(select(UserRow).order_by(UserRow.created))]

    def caller_of(self, user: User) -> Caller:
        return Caller(user_id=user.id, user=user.name, project_id=user.project_id,
                      project=user.project, role=user.role)

    # --- EC2 credentials
    def credentials(self, user_ref: str, create: bool = True) -> AccessKey:
        """The user's access key (made on first request)."""
        user = self.user(user_ref)
        with self.db.session() as s:
            row = s.scalar(select(AccessKeyRow).where(AccessKeyRow.user_id == user.id)
                           .order_by(AccessKeyRow.created))
            if row is None:
                if not create:
                    raise NotFound(f"user {user.name} has no access key", resource="access_key")
                row = AccessKeyRow(access_key_id=new_access_key_id(),
                                   secret=secrets.token_urlsafe(30)[:40], user_id=user.id)
                s.add(row)
                s.flush()
            return AccessKey(row.access_key_id, row.secret, user.name, row.created)

    def secret_for(self, access_key_id: str) -> str | None:
        with self.db.reader() as s:
            row = s.get(AccessKeyRow, access_key_id)
            return row.secret if row is not None else None

    def caller_for_key(self, access_key_id: str) -> Caller:
        with self.db.reader() as s:
            row = s.get(AccessKeyRow, access_key_id)
            if row is None:
                raise Unauthorized("unknown access key")
        return self.caller_of(self.user(row.user_id))

    # --- tokens
    def ensure_admin(self, token: str) -> User:
        """The default project and its admin user, owning the admin token."""
        with self.db.session() as s:
            proj = s.scalar(select(ProjectRow).where(ProjectRow.name == DEFAULT_PROJECT))
            if proj is None:
                proj = ProjectRow(id=new_id("project"), name=DEFAULT_PROJECT)
                s.add(proj)
                s.flush()
            user = s.scalar(select(UserRow).where(UserRow.name == "admin"))
            if user is None:
                user = UserRow(id=new_id("user"), name="admin", project_id=proj.id, role="admin")
                s.add(user)
                s.flush()
            tok = s.get(TokenRow, _hash(token))
            if tok is None:
                s.add(TokenRow(sha256=_hash(token), name="admin", role="admin", user_id=user.id))
            elif tok.user_id is None:
                tok.user_id = user.id
        return self.user("admin")

    def known_token(self, header: str | None) -> Caller | None:
        """The caller of a token verified before (no I/O); None when it must be verified."""
        if not header or not header.startswith("Bearer "):
            return None
        digest = _hash(header[7:].strip())
        with self._mu:
            return self._cache.get(digest)

    def verify_token(self, header: str | None) -> Caller:
        """The caller a bearer token stands for, or Unauthorized."""
        if not header or not header.startswith("Bearer "):
            raise Unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
        digest = _hash(header[7:].strip())
        with self._mu:
            hit = self._cache.get(digest)
        if hit is not None:
            return hit
        with self.db.reader() as s:
            row = s.get(TokenRow, digest)
            if row is None or not hmac.compare_digest(row.sha256, digest) or row.user_id is None:
                raise Unauthorized("invalid token")
            user_id = row.user_id
        caller = self.caller_of(self.user(user_id))
        with self._mu:
            self._cache[digest] = caller
        return caller

    def default_project_id(self) -> str:
        return self.project(DEFAULT_PROJECT).id
