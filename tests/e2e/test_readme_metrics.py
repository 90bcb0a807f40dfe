"""README's metrics section, run as written with bash against a real `lxcloud up`: a CPU hog shows
in `show`, `top --once` and `/metrics`, and the history is there."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.conftest import Cloud, run_readme
from tests.e2e.test_readme_walkthrough import blocks

SECTION = "## Metrics"


def test_metrics_section_runs_as_written(cloud: Cloud, home: Path) -> None:
    script = blocks("sh", SECTION)[0]
    assert "lxcloud top --once" in script and "/metrics" in script
    sh = run_readme(script, cloud, home, timeout=300)
    said = f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"
    assert sh.returncode == 0, said
    m = re.search(r"^cpu use: +([0-9.]+)% \(100% = one CPU\)", sh.stdout, re.M)
    assert m and 50 <= float(m.group(1)) <= 150, said
    assert re.search(r"^mem use: +[0-9.]+[KMG]iB of 64MiB", sh.stdout, re.M), said
    row = re.search(r"^busy +running +([0-9.]+) ", sh.stdout, re.M)
    assert row and float(row.group(1)) >= 50, said
    assert re.search(r"^INSTANCE +STATE +CPU%", sh.stdout, re.M), said
    assert "10 True" in sh.stdout.splitlines() or "10.0 True" in sh.stdout.splitlines(), said
    prom = re.search(r'^lxcloud_instance_cpu_seconds_total\{instance="busy",instance_id="i-[0-9a-f]+",'
                     r'node="[^"]+",project="default"\} ([0-9.e+]+)$', sh.stdout, re.M)
    assert prom and float(prom.group(1)) > 0, said
