"""Storage through the real CLI on a real `lxcloud up` with real containers: pools, a disk limit
seen and enforced inside, a volume hot-plugged into a running instance (and the refusal to detach
it while a process inside holds it), snapshots and the restore of an older one, a copy with its
own identity, an image made from an instance, and an export/import round trip."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cloud

MiB = 1024**2


@pytest.fixture(scope="module", autouse=True)
def busybox(cloud: Cloud) -> None:
    cloud.cli("image", "build", "busybox", timeout=300)


def js(cloud: Cloud, *args: str) -> Any:
    return cloud.json(*args)


def sh(cloud: Cloud, name: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cloud.cli("exec", name, "--", "sh", "-c", script, check=check)


def refused(cp: subprocess.CompletedProcess[str], *words: str) -> str:
    """A CLI command refused: exit 1, one clear line on stderr naming `words`."""
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    last = cp.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in cp.stderr, cp.stderr
    for w in words:
        assert w in last, (w, last)
    return last


def df_kib(cloud: Cloud, name: str, path: str = "/") -> int:
    return int(sh(cloud, name, f"df -kP {path} | tail -n 1").stdout.split()[1])


def mounted(path: str) -> bool:
    """Something is mounted at or below `path` on the host."""
    return any(line.split()[1].startswith(path)
               for line in Path("/proc/mounts").read_text().splitlines())


@pytest.fixture
def web(cloud: Cloud) -> Iterator[str]:
    """A running busybox instance `web` (deleted afterwards, with whatever the test made)."""
    cloud.cli("launch", "busybox", "web", "--memory", "64MiB", "--wait")
    try:
        yield "web"
    finally:
        for i in js(cloud, "list"):
            cloud.cli("delete", i["name"], "--force", check=False)
        for v in js(cloud, "volume", "list"):
            cloud.cli("volume", "delete", v["id"], check=False)
        for img in js(cloud, "image", "list"):
            if img["name"] != "busybox":
                cloud.cli("image", "delete", img["id"], check=False)


def test_pool_create_list_show_delete_refused_while_in_use(cloud: Cloud) -> None:
    [default] = js(cloud, "pool", "list")
    assert default["name"] == "default" and default["quota"] is True, default
    out = cloud.cli("pool", "create", "fast", "--driver", "dir", "--size", "1GiB").stdout
    assert "created pool fast" in out and "quota yes" in out, out
    pool = js(cloud, "pool", "show", "fast")
    assert pool["driver"] == "dir" and pool["quota"] is True and pool["size"] == 1024 * MiB
    assert 900 * MiB <= pool["capacity"] <= 1024 * MiB and pool["free"] <= pool["capacity"]
    listing = cloud.cli("pool", "list").stdout
    assert "fast" in listing and "default" in listing
    shown = cloud.cli("pool", "show", "fast").stdout
    assert "quota:       yes" in shown and "instances:   0" in shown, shown
    try:
        cloud.cli("launch", "busybox", "onfast", "--pool", "fast", "--disk", "64MiB",
                  "--memory", "64MiB", "--wait")
        inst = js(cloud, "show", "onfast")
        assert inst["disks"][0]["pool"] == "fast" and inst["disks"][0]["size"] == 64 * MiB
        assert js(cloud, "pool", "show", "fast")["instances"] == 1
        refused(cloud.cli("pool", "delete", "fast", check=False), "in use", "1 instance")
        assert "fast" in [p["name"] for p in js(cloud, "pool", "list")]
        cloud.cli("delete", "onfast", "--force")
    finally:
        cloud.cli("delete", "onfast", "--force", check=False)
    assert "deleted pool fast" in cloud.cli("pool", "delete", "fast").stdout
    assert [p["name"] for p in js(cloud, "pool", "list")] == ["default"]
    assert not mounted(pool["path"])       # its loop-backed filesystem went with it
    refused(cloud.cli("pool", "create", "x", "--driver", "zfs", check=False), "zfs")
    refused(cloud.cli("pool", "delete", "default", check=False), "default pool")


def test_disk_limit_enforced_and_seen_inside_then_resized(cloud: Cloud) -> None:
    cloud.cli("launch", "busybox", "small", "--disk", "64MiB", "--memory", "64MiB", "--wait")
    try:
        assert js(cloud, "show", "small")["limits"]["disk"] == 64 * MiB
        assert 50 * 1024 <= df_kib(cloud, "small") <= 64 * 1024      # the limit, not the host's
        dd = sh(cloud, "small", "dd if=/dev/zero of=/big bs=1M count=100 2>&1", check=False)
        assert dd.returncode != 0, dd.stdout
        assert "No space left on device" in dd.stdout or "Disk quota exceeded" in dd.stdout
        sh(cloud, "small", "rm /big; dd if=/dev/zero of=/k40 bs=1M count=40 2>/dev/null; sync")
        cloud.cli("stop", "small", "--force")
        refused(cloud.cli("resize", "small", "--disk", "16MiB", check=False))
        assert "now 128MiB" in cloud.cli("resize", "small", "--disk", "128MiB").stdout
        cloud.cli("start", "small")
        assert 110 * 1024 <= df_kib(cloud, "small") <= 128 * 1024
        refused(cloud.cli("resize", "small", "--disk", "lots", check=False), "size")
    finally:
        cloud.cli("delete", "small", "--force", check=False)


def test_volume_hot_attach_detach_refused_while_held_then_forced(cloud: Cloud, web: str) -> None:
    vol = js(cloud, "volume", "create", "data", "--size", "32MiB")
    vid = vol["id"]
    assert vol["state"] == "available" and vol["size"] == 32 * MiB
    out = cloud.cli("volume", "attach", "data", web).stdout
    assert f"at /media/{vid}" in out, out
    assert js(cloud, "volume", "show", "data")["state"] == "in-use"
    sh(cloud, web, f"echo hello > /media/{vid}/f")
    assert sh(cloud, web, f"cat /media/{vid}/f").stdout.strip() == "hello"
    assert 25 * 1024 <= df_kib(cloud, web, f"/media/{vid}") <= 32 * 1024
    listing = cloud.cli("volume", "list").stdout
    assert f"web:/media/{vid}" in listing, listing

    sh(cloud, web, f"cd /media/{vid} && (setsid sleep 600 </dev/null >/dev/null 2>&1 &)")
    msg = refused(cloud.cli("volume", "detach", "data", check=False), "sleep")
    assert js(cloud, "volume", "show", "data")["attachments"], msg
    cloud.cli("volume", "detach", "data", "--force")
    assert js(cloud, "volume", "show", "data")["attachments"] == []
    assert sh(cloud, web, f"test -e /media/{vid}/f", check=False).returncode != 0
    # the holder still keeps the detached filesystem alive: deleting waits for it to go
    refused(cloud.cli("volume", "delete", "data", check=False), "in use")
    after = js(cloud, "volume", "show", "data")
    assert after["state"] == "available", after            # refused, and whole
    sh(cloud, web, "pkill sleep")

    # a snapshot of it, and a new volume holding that snapshot's data, seen where it is put
    cloud.cli("volume", "snapshot", "create", "data", "s1")
    assert [s["name"] for s in js(cloud, "volume", "snapshot", "list", "data")] == ["s1"]
    copy = js(cloud, "volume", "create", "data2", "--from-snapshot", "data/s1")
    assert copy["size"] == 32 * MiB
    cloud.cli("volume", "attach", "data2", web, "--path", "/srv/d2")
    assert sh(cloud, web, "cat /srv/d2/f").stdout.strip() == "hello"
    refused(cloud.cli("volume", "delete", "data2", check=False), "attached")
    cloud.cli("volume", "detach", "data2")
    cloud.cli("volume", "delete", "data2")
    cloud.cli("volume", "snapshot", "delete", "data", "s1")
    cloud.cli("volume", "delete", "data")
    assert js(cloud, "volume", "list") == []


def test_snapshots_restore_an_older_one(cloud: Cloud, web: str) -> None:
    sh(cloud, web, "echo v1 > /state")
    cloud.cli("snapshot", "create", web, "one")
    sh(cloud, web, "echo v2 > /state")
    cloud.cli("snapshot", "create", web, "two")
    sh(cloud, web, "echo v3 > /state")
    snaps = js(cloud, "snapshot", "list", web)
    assert [s["name"] for s in snaps] == ["one", "two"]
    assert all(s["state"] == "completed" for s in snaps)
    out = cloud.cli("snapshot", "restore", web, "one").stdout
    assert "it is running" in out, out
    assert sh(cloud, web, "cat /state").stdout.strip() == "v1"       # the older one
    cloud.cli("snapshot", "restore", web, "two")
    assert sh(cloud, web, "cat /state").stdout.strip() == "v2"
    cloud.cli("snapshot", "delete", web, "one")
    assert [s["name"] for s in js(cloud, "snapshot", "list", web)] == ["two"]
    refused(cloud.cli("snapshot", "restore", web, "one", check=False), "not found")


def test_copy_has_its_own_identity(cloud: Cloud, web: str) -> None:
    sh(cloud, web, "echo mine > /data")
    src = js(cloud, "show", web)
    copy = js(cloud, "copy", web, "web2", "--start")
    assert copy["state"] == "running" and copy["name"] == "web2"
    assert copy["id"] != src["id"] and copy["ipv4"] != src["ipv4"] and copy["mac"] != src["mac"]
    assert sh(cloud, "web2", "hostname").stdout.strip() == "web2"
    assert sh(cloud, "web2", "cat /data").stdout.strip() == "mine"
    ids = [sh(cloud, n, "cat /etc/machine-id").stdout.strip() for n in (web, "web2")]
    assert ids[0] and ids[1] and ids[0] != ids[1]


def test_image_create_from_an_instance_then_launch_it(cloud: Cloud, web: str) -> None:
    sh(cloud, web, "echo baked > /baked")
    out = cloud.cli("image", "create-from", web, "--name", "web-img").stdout
    assert "created image web-img" in out, out
    assert "web-img" in [i["name"] for i in js(cloud, "image", "list")]
    cloud.cli("launch", "web-img", "fromimg", "--memory", "64MiB", "--wait")
    assert sh(cloud, "fromimg", "cat /baked").stdout.strip() == "baked"
    assert js(cloud, "show", "fromimg")["image"] == "web-img"


def test_export_import_round_trip(cloud: Cloud, web: str, tmp_path: Path) -> None:
    sh(cloud, web, "echo first > /kept")
    cloud.cli("snapshot", "create", web, "s1")
    sh(cloud, web, "echo second > /kept")
    archive = tmp_path / "web.tar"
    cp = cloud.cli("export", web, str(archive))
    assert archive.stat().st_size > 0 and "exported web" in cp.stdout
    assert "downloading web.tar: 100%" in cp.stderr, cp.stderr     # not a terminal: plain lines
    assert not list(tmp_path.glob(".*.part"))

    cp = cloud.cli("import", str(archive), "--name", "back")
    assert "uploading web.tar: 100%" in cp.stderr and "with 1 snapshot(s)" in cp.stdout, cp
    back = js(cloud, "show", "back")
    assert back["state"] == "stopped" and back["id"] != js(cloud, "show", web)["id"]
    assert [s["name"] for s in js(cloud, "snapshot", "list", "back")] == ["s1"]
    cloud.cli("start", "back")
    assert sh(cloud, "back", "cat /kept").stdout.strip() == "second"
    cloud.cli("snapshot", "restore", "back", "s1")
    assert sh(cloud, "back", "cat /kept").stdout.strip() == "first"

    bad = tmp_path / "bad.tar"
    bad.write_text("not an archive")
    refused(cloud.cli("import", str(bad), check=False), "not an lxcloud export")
    assert "bad" not in [i["name"] for i in js(cloud, "list")]
    assert json.loads(cloud.cli("list", "--json").stdout)
