"""The cloud's own secrets and identity, made on first start and kept 0600 in the data dir, so
that what they sign stays valid across a restart: the admin token, this controller's id, the
metadata token key, the EC2 pagination token key."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path

from lxcloud.config import Settings


def _random() -> bytes:
    return secrets.token_bytes(32)


def ensure_secret(path: Path, make: Callable[[], bytes] = _random) -> bytes:
    """The content of `path`, made once with `make()` (0600, never overwritten: a second process
    racing to make it reads the winner's)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    value = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value


def ensure_admin_token(settings: Settings) -> str:
    return ensure_secret(settings.token_file,
                         lambda: (secrets.token_urlsafe(32) + "\n").encode()).decode().strip()


def controller_id(settings: Settings) -> str:
    """This controller's name on the operations it runs (stable across its restarts)."""
    return ensure_secret(settings.data_dir / "controller.id",
                         lambda: f"ctl-{uuid.uuid4().hex[:12]}\n".encode()).decode().strip()


def metadata_secret(settings: Settings) -> bytes:
    """The key of IMDSv2 tokens."""
    return ensure_secret(settings.data_dir / "metadata.secret")
