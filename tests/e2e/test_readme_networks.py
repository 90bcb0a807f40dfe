"""README's networks section, run as written: its ```sh block with bash, as a new user would (a
fresh HOME, the venv's bin on PATH), against a real `lxcloud up`; it cleans up after itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import VENV_BIN, Cloud
from tests.e2e.test_readme_walkthrough import blocks

SECTION = "### Networks"


@pytest.fixture
def home() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lxcloud-home-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_networks_section_runs_as_written(cloud: Cloud, home: Path) -> None:
    (script,) = blocks("sh", SECTION)
    for step in ("network create backend", "--isolated", "--ip 10.20.0.10", "--network default",
                 "nslookup db.backend.internal", "network delete backend || true",
                 "--allow-host tcp/22"):
        assert step in script, step
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LXCLOUD_", "AWS_"))}
    env.update(HOME=str(home), LXCLOUD_DATA_DIR=str(cloud.data_dir),
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    sh = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=home, env=env,
                        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    said = f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"
    assert sh.returncode == 0, said
    out = sh.stdout
    assert "created network backend (10.20.0.0/24, nat, gateway 10.20.0.1)" in out, said
    assert "created network lab (10.21.0.0/24, isolated" in out, said
    # app's NICs in order; db by name in its domain and bare; lab reaches nothing
    assert re.search(r"nic:\s+eth0 on backend, 10\.20\.0\.\d+", out) and \
        re.search(r"nic:\s+eth1 on default, ", out), said
    assert re.search(r"Name:\s+db\.backend\.internal\s+Address: 10\.20\.0\.10", out), said
    assert "1 packets received" in out and "lab is isolated" in out, said
    # the refusals said why
    assert re.search(r"^error: .*10\.20\.0\.10 is already in use", sh.stderr, re.M), said
    assert re.search(r"^error: .*in use by app, db", sh.stderr, re.M), said
    assert re.search(r"host ports:\s+tcp/22", out), said
    # it cleaned up after itself
    assert cloud.json("list") == []
    assert [n["name"] for n in cloud.json("network", "list")] == ["default"]  # type: ignore[union-attr,index]
