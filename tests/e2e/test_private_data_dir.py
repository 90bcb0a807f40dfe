"""`lxcloud --data-dir DIR up` with DIR made by mkdtemp (0700) below another 0700 directory:
the cloud makes its way in for the containers' root and a busybox instance runs."""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from tests.e2e.conftest import LXCLOUD, Cloud, free_port

IDMAP_BASE = 1_000_000


def test_cloud_in_a_private_data_dir_launches() -> None:
    parent = Path(tempfile.mkdtemp(prefix="lxcloud-private-"))    # 0700, like /root
    c = Cloud(data_dir=Path(tempfile.mkdtemp(dir=parent)), port=free_port())  # 0700 too
    assert stat.S_IMODE(parent.stat().st_mode) == stat.S_IMODE(c.data_dir.stat().st_mode) == 0o700
    try:
        c.start()
        log = c.log.read_text()
        assert f"setfacl -m u:{IDMAP_BASE}:x {parent}" in log and f"chmod 711 {c.data_dir}" in log
        c.cli("image", "build", "busybox")
        c.cli("launch", "busybox", "web", "--wait", "--memory", "64MiB")
        assert c.cli("exec", "web", "--", "sh", "-c", "echo ok").stdout == "ok\n"
        assert c.json("show", "web")["state"] == "running"  # type: ignore[index]
        acl = subprocess.run(["getfacl", "-cp", str(parent)], capture_output=True, text=True).stdout
        assert f"user:{IDMAP_BASE}:--x" in acl.split()
    finally:
        c.stop()
        subprocess.run([LXCLOUD, "purge", "--yes"], env=c.env, capture_output=True, timeout=120)
        shutil.rmtree(parent, ignore_errors=True)    # the ACL the cloud granted goes with it
