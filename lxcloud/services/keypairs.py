"""SSH key pairs, per project: made here (the private key is returned once) or imported."""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select

from lxcloud.core.caller import Caller
from lxcloud.core.errors import Conflict, InvalidInput, NotFound, Reason
from lxcloud.core.ids import new_id
from lxcloud.core.proc import run
from lxcloud.db.engine import Database
from lxcloud.db.tables import KeyPairRow

KEY_NAME_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
KEY_TYPES = ("rsa", "ed25519")


@dataclass(frozen=True)
class KeyPair:
    id: str
    name: str
    key_type: str
    fingerprint: str
    public_key: str
    created: datetime
    private_key: str | None = None     # only when just made


def _to_model(r: KeyPairRow, private: str | None = None) -> KeyPair:
    return KeyPair(r.id, r.name, r.key_type, r.fingerprint, r.public_key, r.created, private)


def _parse_public(material: str) -> tuple[str, str, str]:
    """(normalised key line, key type, MD5 fingerprint) of an OpenSSH public key; InvalidInput."""
    parts = material.strip().split()
    kinds = {"ssh-rsa": "rsa", "ssh-ed25519": "ed25519"}
    if len(parts) < 2 or parts[0] not in kinds:
        raise InvalidInput("the key material is not an OpenSSH ssh-rsa or ssh-ed25519 public key",
                           reason=Reason.KEY_FORMAT)
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise InvalidInput("the key material is not valid base64", reason=Reason.KEY_FORMAT) from None
    n = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else 0
    if blob[4:4 + n].decode(errors="replace") != parts[0]:
        raise InvalidInput("the key material does not match its type", reason=Reason.KEY_FORMAT)
    md5 = hashlib.md5(blob).hexdigest()  # noqa: S324 - a fingerprint, as EC2 shows for imports
    return f"{parts[0]} {parts[1]}", kinds[parts[0]], ":".join(md5[i:i + 2] for i in range(0, 32, 2))


class KeyPairService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _check_name(self, name: str) -> None:
        if not KEY_NAME_RE.match(name or ""):
            raise InvalidInput("a key pair name is 1 to 255 printable ASCII characters")

    def create(self, name: str, caller: Caller, key_type: str = "rsa") -> KeyPair:
        self._check_name(name)
        if key_type not in KEY_TYPES:
            raise InvalidInput(f"key type must be one of {', '.join(KEY_TYPES)}")
        self._unique(name, caller)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "key"
            argv = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", name, "-f", str(path)]
            if key_type == "rsa":
                argv[4:4] = ["-b", "2048", "-m", "PEM"]
            run(argv, timeout=60)
            private = path.read_text()
            public = (path.with_suffix(".pub")).read_text()
        return self._store(name, public, caller, private)

    def import_key(self, name: str, public_key: str, caller: Caller) -> KeyPair:
        self._check_name(name)
        self._unique(name, caller)
        return self._store(name, public_key, caller, None)

    def _unique(self, name: str, caller: Caller) -> None:
        with self.db.reader() as s:
            if s.scalar(select(KeyPairRow.id).where(KeyPairRow.project_id == caller.project_id,
                                                    KeyPairRow.name == name)):
                raise Conflict(f"the key pair {name!r} already exists", resource="key_pair")

    def _store(self, name: str, public: str, caller: Caller, private: str | None) -> KeyPair:
        line, kind, fp = _parse_public(public)
        row = KeyPairRow(id=new_id("key_pair"), name=name, project_id=caller.project_id,
                         key_type=kind, fingerprint=fp, public_key=line + f" {name}")
        with self.db.session() as s:
            s.add(row)
        return _to_model(row, private)

    def get(self, name: str, caller: Caller) -> KeyPair:
        with self.db.reader() as s:
            row = s.scalar(select(KeyPairRow).where(KeyPairRow.project_id == caller.project_id,
                                                    KeyPairRow.name == name))
            if row is None:
                raise NotFound(f"the key pair {name!r} does not exist", resource="key_pair")
            return _to_model(row)

    def list(self, caller: Caller) -> list[KeyPair]:
        with self.db.reader() as s:
            return [_to_model(r) for r in s.scalars(
                select(KeyPairRow).where(KeyPairRow.project_id == caller.project_id)
                .order_by(KeyPairRow.name))]

    def delete(self, caller: Caller, name: str | None = None, key_id: str | None = None) -> bool:
        """Removes it; like EC2, deleting a key pair that isn't there is not an error."""
        q = delete(KeyPairRow).where(KeyPairRow.project_id == caller.project_id)
        q = q.where(KeyPairRow.name == name) if name is not None else q.where(KeyPairRow.id == key_id)
        with self.db.session() as s:
            return bool(s.execute(q).rowcount)  # type: ignore[attr-defined]
