"""REST: the project's key pairs (made here, private key shown once; or imported)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.core.caller import Caller
from lxcloud.core.errors import NotFound
from lxcloud.services.cloud import Cloud
from lxcloud.services.keypairs import KeyPair

router = APIRouter(prefix="/api/v1/key-pairs", tags=["key-pairs"])


class KeyPairIn(BaseModel):
    name: str
    public_key: str | None = Field(None, description="an OpenSSH public key to import (a new "
                                                     "pair is made when omitted)")
    key_type: str = Field("rsa", description="rsa or ed25519, for a new pair")


class KeyPairOut(BaseModel):
    id: str
    name: str
    key_type: str
    fingerprint: str
    public_key: str
    created: datetime
    private_key: str | None = Field(None, description="only in the answer that made it")

    @classmethod
    def of(cls, k: KeyPair) -> KeyPairOut:
        return cls(**asdict(k))


@router.get("", response_model=list[KeyPairOut])
def list_key_pairs(c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[KeyPairOut]:
    return [KeyPairOut.of(k) for k in c.keypairs.list(who)]


@router.post("", status_code=201, response_model=KeyPairOut)
def create_key_pair(body: KeyPairIn, c: Cloud = Depends(cloud),
                    who: Caller = Depends(caller)) -> KeyPairOut:
    if body.public_key:
        return KeyPairOut.of(c.keypairs.import_key(body.name, body.public_key, who))
    return KeyPairOut.of(c.keypairs.create(body.name, who, body.key_type))


@router.get("/{name}", response_model=KeyPairOut)
def get_key_pair(name: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> KeyPairOut:
    return KeyPairOut.of(c.keypairs.get(name, who))


@router.delete("/{name}", status_code=204)
def delete_key_pair(name: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> None:
    if not c.keypairs.delete(who, name=name):
        raise NotFound(f"key pair {name!r} not found", resource="key_pair")
