"""The CLI's storage commands over the REST API and a fake node: pools, disks, volumes,
snapshots, copies, images from instances, export and import. The CLI only translates: these
check what it sends, prints and exits with, not the rules (tests/unit/services has those)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.cli.conftest import Run


def ok(res: Any) -> Any:
    assert res.exit_code == 0, f"exit {res.exit_code}\n{res.stdout}\n{res.stderr}"
    return res


def as_json(run: Run, *args: str) -> Any:
    return json.loads(ok(run(*args, "--json")).stdout)


def failed(res: Any, *words: str) -> str:
    assert res.exit_code == 1, f"exit {res.exit_code}\n{res.stdout}\n{res.stderr}"
    assert res.stderr.splitlines()[-1].startswith("error: "), res.stderr   # after any progress
    assert "Traceback" not in res.stderr + res.stdout
    for w in words:
        assert w in res.stderr, (w, res.stderr)
    return str(res.stderr)


def test_pool_create_list_show_delete(run: Run, image: Any, tmp_path: Path) -> None:
    src = tmp_path / "disk"
    src.mkdir()
    p = as_json(run, "pool", "create", "fast", "--driver", "dir", "--source", str(src))
    assert p["name"] == "fast" and p["driver"] == "dir" and p["source"] == str(src)
    text = ok(run("pool", "list")).stdout
    assert "fast" in text and "default" in text and "CAPACITY" in text and "QUOTA" in text
    assert {q["name"] for q in as_json(run, "pool", "list")} >= {"default", "fast"}
    shown = ok(run("pool", "show", "fast")).stdout
    for field in ("driver:", "capacity:", "used:", "free:", "quota:", "instances:", "volumes:"):
        assert field in shown, field
    assert as_json(run, "pool", "show", "fast")["instances"] == 0

    ok(run("launch", "bb", "web", "--pool", "fast", "--disk", "64MiB", "--wait"))
    assert as_json(run, "pool", "show", "fast")["instances"] == 1
    failed(run("pool", "delete", "fast"), "in use")
    ok(run("delete", "web", "--force"))
    assert "deleted pool fast" in ok(run("pool", "delete", "fast")).stdout
    assert "fast" not in {q["name"] for q in as_json(run, "pool", "list")}

    failed(run("pool", "create", "bad", "--driver", "zfs"), "unknown pool driver")
    failed(run("pool", "show", "nope"), "not found")
    failed(run("pool", "delete", "default"), "default pool")


def test_launch_with_a_disk_then_resize(run: Run, image: Any) -> None:
    ok(run("launch", "bb", "web", "--disk", "64MiB", "--wait"))
    web = as_json(run, "show", "web")
    assert web["limits"]["disk"] == 64 * 1024**2
    assert web["disks"][0]["name"] == "root" and web["disks"][0]["size"] == 64 * 1024**2
    shown = ok(run("show", "web")).stdout
    assert "disk:      64MiB" in shown and "root on pool default, 64MiB" in shown
    ok(run("stop", "web"))
    assert "now 128MiB" in ok(run("resize", "web", "--disk", "128MiB")).stdout
    assert as_json(run, "show", "web")["limits"]["disk"] == 128 * 1024**2
    failed(run("resize", "web", "--disk", "lots"), "size")
    failed(run("launch", "bb", "x", "--disk", "lots"), "size")


def test_volume_lifecycle(run: Run, image: Any) -> None:
    ok(run("launch", "bb", "web", "--wait"))
    vol = as_json(run, "volume", "create", "data", "--size", "16MiB")
    vid = vol["id"]
    assert vid.startswith("vol-") and vol["state"] == "available" and vol["size"] == 16 * 1024**2
    assert [v["name"] for v in as_json(run, "volume", "list")] == ["data"]
    assert "data" in ok(run("volume", "list")).stdout

    res = ok(run("volume", "attach", "data", "web"))
    assert f"attached data ({vid}) to web at /media/{vid}" in res.stdout
    v = as_json(run, "volume", "show", "data")
    assert v["state"] == "in-use" and v["attachments"][0]["instance"] == "web"
    assert f"web:/media/{vid}" in ok(run("volume", "show", vid)).stdout
    failed(run("volume", "delete", "data"), "attached")

    ok(run("volume", "detach", "data"))
    assert as_json(run, "volume", "show", "data")["attachments"] == []
    failed(run("volume", "detach", "data"), "not attached")

    res = ok(run("volume", "attach", "data", "web", "--path", "/srv/data"))
    assert "at /srv/data" in res.stdout
    ok(run("volume", "detach", "data", "--force"))

    ok(run("volume", "resize", "data", "--size", "32MiB"))
    assert as_json(run, "volume", "show", "data")["size"] == 32 * 1024**2

    snap = as_json(run, "volume", "snapshot", "create", "data", "before")
    assert snap["name"] == "before" and snap["state"] == "completed" and snap["of"] == "volume"
    assert [s["name"] for s in as_json(run, "volume", "snapshot", "list", "data")] == ["before"]
    copy = as_json(run, "volume", "create", "copy", "--from-snapshot", "data/before")
    assert copy["snapshot_id"] == snap["id"] and copy["size"] == 32 * 1024**2
    by_id = as_json(run, "volume", "create", "copy2", "--from-snapshot", snap["id"],
                    "--size", "64MiB")
    assert by_id["size"] == 64 * 1024**2
    ok(run("volume", "snapshot", "restore", "data", "before"))
    failed(run("volume", "create", "x", "--from-snapshot", "data/nope"), "no snapshot")
    ok(run("volume", "snapshot", "delete", "data", "before"))
    assert as_json(run, "volume", "snapshot", "list", "data") == []

    for name in ("data", "copy", "copy2"):
        assert f"deleted volume {name}" in ok(run("volume", "delete", name)).stdout
    assert as_json(run, "volume", "list") == []
    failed(run("volume", "create", "big", "--size", "lots"), "size")
    failed(run("volume", "show", "nope"), "not found")


def test_instance_snapshots_restore_an_older_one(run: Run, image: Any) -> None:
    ok(run("launch", "bb", "web", "--wait"))
    assert "created snapshot one" in ok(run("snapshot", "create", "web", "one")).stdout
    two = as_json(run, "snapshot", "create", "web")      # named for it
    assert two["of"] == "root" and two["state"] == "completed" and two["name"]
    names = [s["name"] for s in as_json(run, "snapshot", "list", "web")]
    assert names == ["one", two["name"]]
    assert "one" in ok(run("snapshot", "list", "web")).stdout
    res = ok(run("snapshot", "restore", "web", "one"))
    assert "restored web to snapshot one; it is running" in res.stdout
    ok(run("snapshot", "delete", "web", "one"))
    assert [s["name"] for s in as_json(run, "snapshot", "list", "web")] == [two["name"]]
    failed(run("snapshot", "restore", "web", "one"), "not found")
    failed(run("snapshot", "create", "ghost"), "not found")


def test_copy_and_image_create_from(run: Run, image: Any) -> None:
    ok(run("launch", "bb", "web", "--wait"))
    ok(run("snapshot", "create", "web", "s1"))
    c = as_json(run, "copy", "web", "web2")
    assert c["name"] == "web2" and c["state"] == "stopped" and c["id"] != as_json(
        run, "show", "web")["id"]
    assert "copied web to web3" in ok(run("copy", "web", "web3", "--snapshot", "s1",
                                          "--start")).stdout
    assert as_json(run, "show", "web3")["state"] == "running"

    img = as_json(run, "image", "create-from", "web", "--name", "web-img", "--snapshot", "s1")
    assert img["name"] == "web-img"
    ok(run("stop", "web"))
    assert "created image gold" in ok(run("image", "create-from", "web", "--name",
                                          "gold")).stdout
    ok(run("launch", "gold", "from-gold", "--wait"))
    assert as_json(run, "show", "from-gold")["image"] == "gold"
    failed(run("image", "create-from", "web", "--name", "gold"), "exists")


def test_export_import_round_trip_with_plain_progress(run: Run, image: Any,
                                                      tmp_path: Path) -> None:
    ok(run("launch", "bb", "web", "--wait"))
    ok(run("snapshot", "create", "web", "s1"))
    ok(run("stop", "web"))
    archive = tmp_path / "web.tar"
    res = ok(run("export", "web", str(archive)))
    assert archive.is_file() and archive.stat().st_size > 0
    assert f"exported web to {archive}" in res.stdout
    assert "downloading web.tar: 100%" in res.stderr          # not a terminal: plain lines
    assert not list(tmp_path.glob(".*.part"))

    res = ok(run("import", str(archive), "--name", "back"))
    assert "uploading web.tar: 100%" in res.stderr
    assert "imported back (" in res.stdout and "with 1 snapshot(s)" in res.stdout
    back = as_json(run, "show", "back")
    assert back["state"] == "stopped"
    assert [s["name"] for s in as_json(run, "snapshot", "list", "back")] == ["s1"]

    failed(run("export", "web", str(tmp_path / "no" / "dir" / "x.tar")), "no directory")
    failed(run("export", "ghost", str(tmp_path / "g.tar")), "not found")
    assert not (tmp_path / "g.tar").exists()
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all")
    failed(run("import", str(bad)), "not an lxcloud export")


@pytest.mark.parametrize("args", [
    ["pool", "list"], ["pool", "show", "default"], ["volume", "list"],
    ["snapshot", "list", "web"], ["volume", "snapshot", "list", "data"],
])
def test_listings_have_json(run: Run, image: Any, args: list[str]) -> None:
    ok(run("launch", "bb", "web", "--wait"))
    ok(run("volume", "create", "data", "--size", "16MiB"))
    assert isinstance(as_json(run, *args), list | dict)


def test_a_shared_volume_detaches_from_the_one_named(run: Run, image: Any) -> None:
    ok(run("launch", "bb", "a", "--wait"))
    ok(run("launch", "bb", "b", "--wait"))
    ok(run("volume", "create", "both", "--size", "16MiB", "--shared"))
    ok(run("volume", "attach", "both", "a"))
    assert "to b at /media/" in ok(run("volume", "attach", "both", "b")).stdout
    assert [a["instance"] for a in as_json(run, "volume", "show", "both")["attachments"]] == \
        ["a", "b"]
    failed(run("volume", "detach", "both"), "several")
    ok(run("volume", "detach", "both", "--instance", "a"))
    assert [a["instance"] for a in as_json(run, "volume", "show", "both")["attachments"]] == ["b"]


def test_progress_on_a_terminal_is_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from lxcloud.cli import common

    buf = io.StringIO()
    monkeypatch.setattr(common, "err", Console(file=buf, force_terminal=True, width=100))
    with common.transfer("uploading x.tar", 4 * 1024**2) as t:
        for _ in range(4):
            t.advance(1024**2)
    assert t.done == 4 * 1024**2
    drawn = buf.getvalue()
    assert "4.0/4.0 MiB" in drawn and "uploading x.tar: " not in drawn     # a bar, no lines
    buf.truncate(0)
    monkeypatch.setattr(common, "err", Console(file=buf, width=100))     # not a terminal
    with common.transfer("downloading y.tar") as t:
        t.start(None)                                                    # a length not known
        t.advance(3 * 1024**2)
    assert buf.getvalue().strip().endswith("downloading y.tar: 3MiB")
