"""The admin token of the all-in-one cloud and the cloud's own secrets: made on first start, kept
0600 in the data dir, so what they sign stays valid across a restart."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from lxcloud.config import Settings


def ensure_admin_token(settings: Settings) -> str:
    path = settings.token_file
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def ensure_secret(path: Path, size: int = 32) -> bytes:
    """The random secret kept in `path`, made once (0600, never overwritten: a second process
    racing to make it reads the winner's)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(size))
    return path.read_bytes()
