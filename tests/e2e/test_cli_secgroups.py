"""The CLI drives security groups on a real `lxcloud up` with real containers: README's "Security
groups" section run as written (bash, a fresh HOME, the venv's bin on PATH), then what it shows
checked; and the CLI's errors and --json."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Cloud, run_readme
from tests.e2e.test_readme_walkthrough import blocks

SECTION = "## Security groups"


def test_readme_section_runs_as_written(cloud: Cloud, home: Path) -> None:
    (script,) = blocks("sh", SECTION)
    for step in ("secgroup create web", "secgroup rule add web", "--secgroup web",
                 "instance secgroups set stranger", "secgroup rule remove", "secgroup delete web"):
        assert step in script, step
    sh = run_readme(script, cloud, home, timeout=900)
    said = f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"
    assert sh.returncode == 0, said
    lines = sh.stdout.splitlines()
    # the client got in, the stranger did not until it joined default; ICMP once allowed
    assert lines.count("hello") == 2, said
    assert "stranger: no answer" in lines and "no ICMP rule yet" in lines, said
    assert "1 packets received" in sh.stdout or "1 received" in sh.stdout, said
    # the delete in use was refused naming the instances
    assert "refused: in use" in lines, said
    assert "in use by instance" in sh.stderr, said
    assert "ingress tcp 8080 from group default" in sh.stdout, said
    # it cleaned up after itself
    assert cloud.json("list") == []
    assert [g["name"] for g in cloud.json("secgroup", "list")] == ["default"]  # type: ignore[union-attr,index]


def test_errors_and_json(cloud: Cloud) -> None:
    made = cloud.json("secgroup", "create", "e2e-db", "--description", "databases")
    assert made["name"] == "e2e-db" and made["id"].startswith("sg-")  # type: ignore[index]
    try:
        grp = cloud.json("secgroup", "rule", "add", "e2e-db", "--direction", "ingress",
                         "--protocol", "tcp", "--port-range", "5432-5433", "--cidr", "10.0.0.0/8")
        rules = grp["rules"]  # type: ignore[index]
        assert {(r["direction"], r["protocol"], r["port_from"], r["port_to"], r["cidr"])
                for r in rules} == {("egress", "all", None, None, "0.0.0.0/0"),
                                    ("ingress", "tcp", 5432, 5433, "10.0.0.0/8")}
        dup = cloud.cli("secgroup", "rule", "add", "e2e-db", "--direction", "ingress",
                        "--protocol", "tcp", "--port-range", "5432-5433", "--cidr", "10.0.0.0/8",
                        check=False)
        assert dup.returncode != 0 and "already exists" in dup.stderr, dup.stderr
        bad = cloud.cli("secgroup", "rule", "add", "e2e-db", "--direction", "sideways",
                        check=False)
        assert bad.returncode != 0 and "direction" in bad.stderr, bad.stderr
        gone = cloud.cli("secgroup", "show", "nope", check=False)
        assert gone.returncode != 0 and "not found" in gone.stderr, gone.stderr
        deflt = cloud.cli("secgroup", "delete", "default", check=False)
        assert deflt.returncode != 0 and "cannot be deleted" in deflt.stderr, deflt.stderr
        missing = cloud.cli("secgroup", "rule", "remove", "e2e-db", "--direction", "egress",
                            "--protocol", "udp", "--port", "53", check=False)
        assert missing.returncode != 0 and "is not in" in missing.stderr, missing.stderr
        shown = cloud.cli("secgroup", "show", "e2e-db").stdout
        assert "ingress tcp 5432-5433 from 10.0.0.0/8" in shown and "instances: none" in shown
    finally:
        cloud.cli("secgroup", "delete", "e2e-db", check=False)
    assert "e2e-db" not in cloud.cli("secgroup", "list").stdout
