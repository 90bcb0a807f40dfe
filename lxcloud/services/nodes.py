"""Nodes: the hosts that run instances (the all-in-one cloud has one, `local`)."""

from __future__ import annotations

import socket
from typing import Any

from sqlalchemy import func, select

from lxcloud.core.ids import new_id
from lxcloud.db.engine import Database
from lxcloud.db.tables import InstanceRow, NodeRow
from lxcloud.node.protocol import NodeClient


class NodeService:
    def __init__(self, db: Database, node: NodeClient) -> None:
        self.db = db
        self.node = node
        self.unknown: list[str] = []

    def register_local(self) -> None:
        facts = self.node.facts()
        with self.db.session() as s:
            row = s.scalar(select(NodeRow).where(NodeRow.name == self.node.name))
            if row is None:
                row = NodeRow(id=new_id("node"), name=self.node.name, address=socket.gethostname())
                s.add(row)
            row.status = "online"
            row.facts = dict(facts)

    def list(self) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            counts = dict(s.execute(select(InstanceRow.node, func.count())
                                    .where(InstanceRow.state != "terminated")
                                    .group_by(InstanceRow.node)).all())
            out = []
            for r in s.scalars(select(NodeRow)):
                out.append({"id": r.id, "name": r.name, "address": r.address, "status": r.status,
                            "created": r.created, "instances": counts.get(r.name, 0),
                            "facts": r.facts, "unknown_containers": list(self.unknown)})
            return out
