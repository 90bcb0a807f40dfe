"""README's doctor section, run as written with bash against a real `lxcloud up` (a fresh HOME,
the venv's bin on PATH): every check of a healthy host passes, the cloud's network among them."""

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

SECTION = "## Networking preflight: lxcloud doctor"


@pytest.fixture
def home() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lxcloud-home-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_doctor_section_runs_as_written(cloud: Cloud, home: Path) -> None:
    script = blocks("sh", SECTION)[0]
    assert "lxcloud doctor --json" in script and "python -m lxcloud.node.doctor" in script
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LXCLOUD_", "AWS_"))}
    env.update(HOME=str(home), LXCLOUD_DATA_DIR=str(cloud.data_dir),
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    sh = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=home, env=env,
                        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    said = f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"
    assert sh.returncode == 0, said
    assert re.search(r"^OK\s+network\.default\s", sh.stdout, re.M), said
    assert re.search(r"^OK\s+nft_table\s", sh.stdout, re.M), said
    assert re.search(r"^(ok|warn): 0 failed, \d+ warning\(s\), \d+ ok$", sh.stdout, re.M), said
    assert re.search(r"^(ok|warn) \d+$", sh.stdout, re.M), said
    assert not (home / "doctor.json").exists()

    # and as JSON, through the CLI: the cloud's bridge is what it checked
    report = cloud.json("doctor", "--json")
    assert isinstance(report, dict) and report["status"] in ("ok", "warn")
    net = next(c for c in report["checks"] if c["name"] == "network.default")
    assert net["status"] == "ok" and "up" in net["message"]
