"""README's public addresses section, run as written: its ```sh block with bash, as a new user
would (a fresh HOME, the venv's bin on PATH), against a real `lxcloud up`, with a veth standing in
for the public interface (PUBLIC_IF, PUBLIC_RANGE) and an outside namespace beyond it that checks,
while the script waits, that the address reaches the container; it cleans up after itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import VENV_BIN, Cloud
from tests.e2e.test_readme_walkthrough import blocks
from tests.integration.outside import Outside, addresses, outside_world

SECTION = "## Public addresses and port forwards"


@pytest.fixture
def home() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lxcloud-home-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def world() -> Iterator[Outside]:
    with outside_world() as w:
        yield w


def test_addresses_section_runs_as_written(cloud: Cloud, home: Path, world: Outside) -> None:
    (script,) = blocks("sh", SECTION)
    for step in ("address pool create public", "address allocate --name front",
                 "address associate front web", "port-forward add shared 8080 web",
                 "address release front || true", "address pool delete public"):
        assert step in script, step
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LXCLOUD_", "AWS_"))}
    env.update(HOME=str(home), LXCLOUD_DATA_DIR=str(cloud.data_dir),
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               PUBLIC_IF=world.interface, PUBLIC_RANGE=world.range)
    # the outside world asks too, at the point the script reaches the address itself
    probe = (f'ip netns exec {world.ns} wget -qO- -T 3 "http://$FRONT/" | sed "s/^/outside: /"\n')
    marked = script.replace('curl -s "http://$FRONT/"', probe + 'curl -s "http://$FRONT/"', 1)
    assert marked != script
    sh = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", marked], cwd=home, env=env,
                        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    said = f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"
    assert sh.returncode == 0, said
    lines = sh.stdout.splitlines()
    assert f"created address pool public ({world.public(0)}-{world.public(10)} on " \
           f"{world.interface}, 11 addresses)" in lines, said
    assert f"associated {world.public(0)} with web" in sh.stdout, said
    assert "outside: hello" in lines and lines.count("hello") == 2, said
    assert "error: address" in sh.stderr and "disassociate it first" in sh.stderr, said
    assert f"forwarding {world.public(1)}:8080/tcp -> web:80" in sh.stdout, said
    # it cleaned up after itself
    assert cloud.json("list") == []
    assert cloud.json("address", "list") == [] and cloud.json("address", "pool", "list") == []
    assert addresses(world.interface) == [f"{world.host_ip}/{world.prefix}"]
