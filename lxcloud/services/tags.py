"""Tags on resources (instances, images, key pairs, volumes, snapshots), scoped by project."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from lxcloud.core.caller import Caller
from lxcloud.core.errors import InvalidInput, Reason
from lxcloud.db.engine import Database
from lxcloud.db.tables import TagRow

MAX_TAGS = 50
RESOURCE_TYPES = {"i": "instance", "ami": "image", "key": "key-pair", "vol": "volume",
                  "snap": "snapshot", "sg": "security-group", "eipalloc": "elastic-ip",
                  "vpc": "vpc", "subnet": "subnet", "eni": "network-interface"}


@dataclass(frozen=True)
class Tag:
    resource_id: str
    resource_type: str
    key: str
    value: str


def resource_type_of(resource_id: str) -> str:
    prefix = resource_id.split("-", 1)[0]
    if prefix not in RESOURCE_TYPES:
        raise InvalidInput(f"the resource id {resource_id!r} can't be tagged")
    return RESOURCE_TYPES[prefix]


def check_tag(key: str, value: str) -> None:
    if not key or len(key) > 128 or key.lower().startswith("aws:"):
        raise InvalidInput(f"tag key {key!r} is not valid (1-128 characters, not aws:)")
    if len(value) > 256:
        raise InvalidInput(f"the value of tag {key!r} is longer than 256 characters")


class TagService:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def check(tags: dict[str, str]) -> None:
        """InvalidInput for a key or value no resource may carry, or too many tags at once."""
        for k, v in tags.items():
            check_tag(k, v)
        if len(tags) > MAX_TAGS:
            raise InvalidInput(f"at most {MAX_TAGS} tags per resource", reason=Reason.TAG_LIMIT)

    def set(self, caller: Caller, resource_ids: Sequence[str], tags: dict[str, str]) -> None:
        """Adds or overwrites tags. Callers check first that the resources are the caller's."""
        self.check(tags)
        with self.db.session() as s:
            self.add(s, caller, resource_ids, tags)

    def add(self, s: Session, caller: Caller, resource_ids: Sequence[str],
            tags: dict[str, str]) -> None:
        """`set` inside the caller's transaction (tags already checked)."""
        for rid in resource_ids:
            rtype = resource_type_of(rid)
            for k, v in tags.items():
                row = s.get(TagRow, (rid, k))
                if row is None:
                    s.add(TagRow(resource_id=rid, key=k, value=v, resource_type=rtype,
                                 project_id=caller.project_id))
                elif row.project_id == caller.project_id:
                    row.value = v
            s.flush()
            n = s.scalar(select(func.count()).select_from(TagRow).where(TagRow.resource_id == rid))
            if (n or 0) > MAX_TAGS:
                raise InvalidInput(f"{rid} would have more than {MAX_TAGS} tags",
                                   reason=Reason.TAG_LIMIT)

    def remove(self, caller: Caller, resource_ids: Sequence[str],
               tags: dict[str, str | None]) -> None:
        """Removes the given keys (all tags when empty); a value, when given, must match."""
        with self.db.session() as s:
            for rid in resource_ids:
                q = delete(TagRow).where(TagRow.resource_id == rid,
                                         TagRow.project_id == caller.project_id)
                if not tags:
                    s.execute(q)
                    continue
                for k, v in tags.items():
                    qq = q.where(TagRow.key == k)
                    if v is not None:
                        qq = qq.where(TagRow.value == v)
                    s.execute(qq)

    def of(self, caller: Caller, resource_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        ids = list(resource_ids)
        out: dict[str, dict[str, str]] = {i: {} for i in ids}
        if not ids:
            return out
        with self.db.reader() as s:
            for r in s.scalars(select(TagRow).where(TagRow.resource_id.in_(ids),
                                                   TagRow.project_id == caller.project_id)):
                out[r.resource_id][r.key] = r.value
        return out

    def list(self, caller: Caller) -> list[Tag]:
        with self.db.reader() as s:
            return [Tag(r.resource_id, r.resource_type, r.key, r.value) for r in s.scalars(
                select(TagRow).where(TagRow.project_id == caller.project_id)
                .order_by(TagRow.resource_id, TagRow.key))]

    def forget(self, resource_id: str) -> None:
        with self.db.session() as s:
            self.remove_all(s, [resource_id])

    @staticmethod
    def remove_all(s: Session, resource_ids: Sequence[str]) -> None:
        """Every tag of the resources, in the caller's transaction (they are being deleted)."""
        s.execute(delete(TagRow).where(TagRow.resource_id.in_(list(resource_ids))))
