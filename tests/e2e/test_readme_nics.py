"""README's NICs section, run as written: its ```sh block with bash, as a new user would (a fresh
HOME, the venv's bin on PATH), against a real `lxcloud up`; it cleans up after itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.e2e.conftest import Cloud, run_readme
from tests.e2e.test_readme_walkthrough import blocks

SECTION = "## NICs, direct attachment and bandwidth limits"


def test_nics_section_runs_as_written(cloud: Cloud, home: Path) -> None:
    (script,) = blocks("sh", SECTION)
    for step in ("--ingress 20Mbit --egress 10Mbit", "nic set web eth0", "nic attach web",
                 "--no-ip", "restart web", "nic detach web eth0 || true", "nic detach web eth2",
                 "--driver macvlan --parent lxdemo0 --mode bridge", "--egress 1Mbit || true"):
        assert step in script, step
    try:
        sh = run_readme(script, cloud, home, timeout=600)
    finally:   # the script removes it; a failed run must not leave it
        subprocess.run(["ip", "link", "del", "lxdemo0"], capture_output=True)
    said = f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"
    assert sh.returncode == 0, said
    out, err = sh.stdout, sh.stderr
    # the limits, as set and changed
    assert re.search(r"eth0 .* 20Mbit\s+50Mbit", out), said
    # the configured NIC (twice: before and after the restart), the unconfigured one up
    assert out.count("inet 10.22.0.50/24") == 2, said
    assert re.search(r"eth2(@\S+)?: <[^>]*\bUP\b", out), said
    assert "web: eth1 on side at 10.22.0.50" in out and "web: eth2 on spare at no address" in out
    assert re.search(r"^error: .*eth0 is the primary interface", err, re.M), said
    assert "web: eth2 detached" in out, said
    assert re.search(r"nic:\s+eth1 on side, 10\.22\.0\.50, .*ingress 20Mbit, egress 50Mbit", out)
    # the macvlan instances reached each other; the refusals said why
    assert "1 packets received" in out, said
    assert re.search(r"^error: .*no host port to limit", err, re.M), said
    assert re.search(r"^error: .*unknown parent interface 'nothere0'", err, re.M), said
    # it cleaned up after itself
    assert cloud.json("list") == []
    assert [n["name"] for n in cloud.json("network", "list")] == ["default"]  # type: ignore[union-attr,index]
    assert subprocess.run(["ip", "link", "show", "lxdemo0"], capture_output=True).returncode != 0
