"""The EC2 VPC helper: each project's default VPC id (a project is one VPC)."""

from __future__ import annotations

import hashlib


def default_vpc_id(project_id: str) -> str:
    """The project's default VPC: "vpc-" + the first 17 hex digits of sha256(project id)."""
    return "vpc-" + hashlib.sha256(project_id.encode()).hexdigest()[:17]
