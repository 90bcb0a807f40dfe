"""A new user following the README: `lxcloud up`, build an image, launch, reach, control, delete.
Real containers, real bridge and nftables, the real CLI."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.e2e.conftest import LXCLOUD, Cloud


def instance(cloud: Cloud, name: str) -> dict[str, Any]:
    return cloud.json("show", name)  # type: ignore[return-value]


def test_up_prints_where_things_are_and_clients_find_it(cloud: Cloud) -> None:
    log = cloud.log.read_text()      # start() returned: the whole banner is there
    token = (cloud.data_dir / "admin.token").read_text().strip()
    assert f"{cloud.url}/docs" in log and token in log
    assert httpx.get(f"{cloud.url}/api/v1/instances").status_code == 401
    # the CLI finds URL and token in the data dir by itself
    assert cloud.json("list") == []
    assert "t3.micro" in cloud.cli("types").stdout
    nodes = cloud.json("nodes")
    assert nodes[0]["status"] == "online"  # type: ignore[index]


def test_image_build_launch_reach_and_control(cloud: Cloud) -> None:
    cloud.cli("image", "build", "busybox", timeout=300)
    images = cloud.json("image", "list")
    assert [i["name"] for i in images] == ["busybox"]  # type: ignore[union-attr,index]

    cloud.cli("launch", "busybox", "web", "--memory", "96MiB", "--cpus", "1", "--wait")
    web = instance(cloud, "web")
    assert web["state"] == "running" and web["ipv4"] and web["node"] == "local"
    assert web["limits"]["memory"] == 96 * 1024**2
    # the hostname inside is the instance name, the address is the database's
    assert cloud.cli("exec", "web", "--", "hostname").stdout.strip() == "web"
    assert web["ipv4"] in cloud.cli("exec", "web", "--", "ip", "-4", "addr", "show", "eth0").stdout
    # exit codes pass through
    assert cloud.cli("exec", "web", "--", "sh", "-c", "exit 7", check=False).returncode == 7
    # reachable from the host
    subprocess.run(["busybox", "ping", "-c1", "-W2", web["ipv4"]], check=True, capture_output=True)
    # listed, as JSON, with the contract's fields
    listed = cloud.json("list")
    assert [i["name"] for i in listed] == ["web"]  # type: ignore[union-attr,index]

    cloud.cli("suspend", "web")
    assert instance(cloud, "web")["state"] == "frozen"
    bad = cloud.cli("suspend", "web", check=False)
    assert bad.returncode == 1 and "frozen" in bad.stderr
    cloud.cli("resume", "web")
    assert instance(cloud, "web")["state"] == "running"
    cloud.cli("restart", "web")
    assert instance(cloud, "web")["state"] == "running"
    cloud.cli("stop", "web")
    assert instance(cloud, "web")["state"] == "stopped"
    assert cloud.cli("exec", "web", "--", "true", check=False).returncode == 1
    cloud.cli("start", "web")
    assert instance(cloud, "web")["state"] == "running"
    assert cloud.cli("logs", "web").stdout.strip()


def test_console_is_interactive(cloud: Cloud) -> None:
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(LXCLOUD, [LXCLOUD, "console", "web"], cloud.env)
    buf = b""

    def read_until(marker: bytes, timeout: float) -> bytes:
        nonlocal buf
        deadline = time.monotonic() + timeout
        while marker not in buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} in console output: {buf[-500:]!r}"
            r, _, _ = select.select([fd], [], [], left)
            if r:
                try:
                    buf += os.read(fd, 4096)
                except OSError:
                    break
        return buf

    try:
        read_until(b"Ctrl-a q", 15)
        os.write(fd, b"\r")
        deadline = time.monotonic() + 15
        while b"hi-42" not in buf and time.monotonic() < deadline:
            os.write(fd, b"echo hi-$((40+2))\r")
            try:
                read_until(b"hi-42", 2)
            except AssertionError:
                pass
        assert b"hi-42" in buf
        os.write(fd, b"\x01q")
        read_until(b"Detached", 10)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


def test_concurrent_launches_get_distinct_addresses(cloud: Cloud) -> None:
    names = [f"par{i}" for i in range(5)]
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda n: cloud.cli("launch", "busybox", n, "--wait",
                                                     "--memory", "64MiB"), names))
    assert all(r.returncode == 0 for r in results)
    ips = [instance(cloud, n)["ipv4"] for n in names]
    assert len(set(ips)) == 5
    for n in names:
        assert instance(cloud, n)["state"] == "running"
    for n in names:
        cloud.cli("delete", n, "--force")
    assert sorted(i["name"] for i in cloud.json("list")) == ["web"]  # type: ignore[union-attr,index]


def test_restart_of_the_controller_keeps_containers_and_reconciles(cloud: Cloud) -> None:
    cloud.cli("launch", "busybox", "ghost", "--wait", "--memory", "64MiB")
    ghost = instance(cloud, "ghost")
    before = instance(cloud, "web")
    up_before = float(cloud.cli("exec", "web", "--", "cat", "/proc/uptime").stdout.split()[0])
    cloud.stop()
    # while the controller is down: a container vanishes, a stranger appears
    lxcpath = str(cloud.data_dir / "containers")
    subprocess.run(["lxc-stop", "-k", "-P", lxcpath, "-n", ghost["id"]], capture_output=True)
    subprocess.run(["lxc-destroy", "-P", lxcpath, "-n", ghost["id"]], check=True,
                   capture_output=True)
    stranger = cloud.data_dir / "containers" / "stranger"
    stranger.mkdir()
    (stranger / "config").write_text("lxc.uts.name = stranger\n")
    cloud.start()
    after = instance(cloud, "web")
    assert after["state"] == "running" and after["ipv4"] == before["ipv4"]
    up_after = float(cloud.cli("exec", "web", "--", "cat", "/proc/uptime").stdout.split()[0])
    assert up_after >= up_before   # the same container kept running: its uptime went on
    g = instance(cloud, "ghost")
    assert g["state"] == "error" and "vanished" in g["state_reason"]
    assert "stranger" in cloud.json("nodes")[0]["unknown_containers"]  # type: ignore[index]
    cloud.cli("delete", "ghost")
    (stranger / "config").unlink()
    stranger.rmdir()


def test_delete_and_bad_input(cloud: Cloud) -> None:
    r = cloud.cli("delete", "web", check=False)
    assert r.returncode == 1 and "running" in r.stderr
    cloud.cli("delete", "web", "--force")
    assert cloud.json("list") == []
    r = cloud.cli("show", "web", check=False)
    assert r.returncode == 1 and "not found" in r.stderr
    r = cloud.cli("launch", "no-such-image", check=False)
    assert r.returncode == 1 and "not found" in r.stderr
    r = cloud.cli("launch", "busybox", "x", "--memory", "lots", check=False)
    assert r.returncode == 1 and "size" in r.stderr
    assert "Traceback" not in r.stderr
