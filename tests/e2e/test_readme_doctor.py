"""README's doctor section, run as written with bash against a real `lxcloud up` (a fresh HOME,
the venv's bin on PATH): every check of a healthy host passes, the cloud's network among them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.conftest import Cloud, run_readme
from tests.e2e.test_readme_walkthrough import blocks

SECTION = "## Networking preflight: lxcloud doctor"


def test_doctor_section_runs_as_written(cloud: Cloud, home: Path) -> None:
    script = blocks("sh", SECTION)[0]
    assert "lxcloud doctor --json" in script and "python -m lxcloud.node.doctor" in script
    sh = run_readme(script, cloud, home, timeout=300)
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
