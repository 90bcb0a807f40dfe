"""API tokens: the admin token made on first start; requests carry `Authorization: Bearer TOKEN`."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading

from sqlalchemy import select

from lxcloud.config import Settings
from lxcloud.core.errors import Unauthorized
from lxcloud.db.engine import Database
from lxcloud.db.tables import TokenRow


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AuthService:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._known: set[str] = set()
        self._mu = threading.Lock()

    def ensure_admin_token(self) -> str:
        """The admin token, created on first start and kept (0600) in the data dir."""
        path = self.settings.token_file
        if path.exists():
            token = path.read_text().strip()
        else:
            token = secrets.token_urlsafe(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
        with self.db.session() as s:
            if s.get(TokenRow, _hash(token)) is None:
                s.add(TokenRow(sha256=_hash(token), name="admin", role="admin"))
        return token

    def create_token(self, name: str) -> str:
        token = secrets.token_urlsafe(32)
        with self.db.session() as s:
            s.add(TokenRow(sha256=_hash(token), name=name, role="admin"))
        return token

    def verify(self, header: str | None) -> str:
        """The token's name, or Unauthorized."""
        if not header or not header.startswith("Bearer "):
            raise Unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
        digest = _hash(header[7:].strip())
        with self._mu:
            if digest in self._known:
                return "admin"
        with self.db.reader() as s:
            for row in s.scalars(select(TokenRow)):
                if hmac.compare_digest(row.sha256, digest):
                    with self._mu:
                        self._known.add(digest)
                    return row.name
        raise Unauthorized("invalid token")
