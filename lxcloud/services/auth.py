"""The admin token of the all-in-one cloud: made on first start, kept 0600 in the data dir."""

from __future__ import annotations

import os
import secrets

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
