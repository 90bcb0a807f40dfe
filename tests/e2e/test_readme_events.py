"""README's events section, run as written with bash against a real `lxcloud up`: the CLI lists an
instance's lifecycle, follows it as JSON lines, and curl reads the same server-sent events."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Cloud, run_readme
from tests.e2e.test_readme_walkthrough import blocks

SECTION = "## Events"


def test_events_section_runs_as_written(cloud: Cloud, home: Path) -> None:
    script = blocks("sh", SECTION)[0]
    assert "lxcloud events --follow --json" in script
    sh = run_readme(script, cloud, home, timeout=300)
    said = f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"
    assert sh.returncode == 0, said
    out = sh.stdout.splitlines()
    # the listing: created, then the states of the launch and the stop
    assert any("instance.created" in line and "evdemo" in line for line in out), said
    assert "['pending', 'running', 'stopping', 'stopped']" in out or any(
        line.startswith("[") and "'running'" in line and line.rstrip().endswith("'stopped']")
        for line in out), said
    # two state changes seen by the follower (stopped -> pending -> running)
    assert "2" in out, said
    assert "event: operation.finished" in out, said
    assert not (home / "events.json").exists() and not (home / "follow.json").exists()
    # the delete is an event too (a deleted instance's name no longer resolves: filter by type)
    got = cloud.json("events", "--type", "instance.deleted")
    assert isinstance(got, list)
    assert [e["instance_name"] for e in got if e["instance_name"] == "evdemo"] == ["evdemo"]
    assert json.dumps(got[-1]["data"]) == "{}"
