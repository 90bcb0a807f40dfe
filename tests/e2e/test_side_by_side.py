"""Two clouds on one host, each with its own data dir and port: neither touches the other's
containers, bridge, rules or addresses, and purging one leaves the other whole."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx

from lxcloud.config import Settings
from tests.e2e.conftest import LXCLOUD, Cloud, free_port


def network_of(c: Cloud) -> dict[str, Any]:
    token = (c.data_dir / "admin.token").read_text().strip()
    nets = httpx.get(f"{c.url}/api/v1/networks", headers={"Authorization": f"Bearer {token}"}).json()
    return nets[0]  # type: ignore[no-any-return]


def test_two_clouds_side_by_side() -> None:
    base = Path(tempfile.mkdtemp(prefix="lxcloud-e2e2-", dir="/tmp"))
    os.chmod(base, 0o755)
    one = Cloud(data_dir=base / "one", port=free_port())
    two = Cloud(data_dir=base / "two", port=free_port())
    try:
        one.start()
        two.start()
        for c in (one, two):
            c.cli("image", "build", "busybox")
            c.cli("launch", "busybox", "same-name", "--wait", "--memory", "64MiB")
        a, b = one.json("show", "same-name"), two.json("show", "same-name")
        assert a["id"] != b["id"]  # type: ignore[index]
        n1, n2 = network_of(one), network_of(two)
        assert n1["bridge"] != n2["bridge"] and n1["cidr"] != n2["cidr"]
        # a token of one cloud opens nothing in the other
        t1 = (one.data_dir / "admin.token").read_text().strip()
        assert httpx.get(f"{two.url}/api/v1/instances",
                         headers={"Authorization": f"Bearer {t1}"}).status_code == 401
        # purging the first leaves the second its container, bridge and rules
        one.stop()
        one.cli("purge", "--yes")
        assert not one.data_dir.exists()
        links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
        assert n1["bridge"] not in links and n2["bridge"] in links
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        t_one = Settings(data_dir=one.data_dir.resolve()).nft_table
        t_two = Settings(data_dir=two.data_dir.resolve()).nft_table
        assert t_one not in tables and t_two in tables
        assert two.json("show", "same-name")["state"] == "running"  # type: ignore[index]
        assert two.cli("exec", "same-name", "--", "hostname").stdout.strip() == "same-name"
    finally:
        for c in (one, two):
            c.stop()
            subprocess.run([LXCLOUD, "purge", "--yes"], env=c.env, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
