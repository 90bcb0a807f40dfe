"""README's EC2 walkthrough, run as written: its ```sh block with bash, then its boto3 block, as
a new user would (a fresh HOME, the venv's bin on PATH), against a real `lxcloud up`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Cloud, readme_env, run_readme

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Walkthrough: a project, a user and an instance, with the aws CLI"


def blocks(lang: str, section: str = SECTION) -> list[str]:
    """The ```LANG blocks of a README section (the walkthrough by default), up to the next
    heading, in order."""
    lines = README.read_text().splitlines(keepends=True)
    assert section + "\n" in lines, f"the section {section!r} is gone from README.md"
    found: list[str] = []
    fence: str | None = None        # the language of the block we are in
    for line in lines[lines.index(section + "\n") + 1:]:
        if fence is None and line.startswith("#"):
            break                    # the next heading: the section ends
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            if fence == lang:
                found.append("")
        elif fence == lang:
            found[-1] += line
    return found


def test_walkthrough_runs_as_written(cloud: Cloud, home: Path) -> None:
    (script,) = blocks("sh")
    for step in ("--write-aws-profile", "create-key-pair --key-name mykey", "cat > init.sh",
                 "describe-images", "run-instances", "wait instance-running", "terminate-instances"):
        assert step in script, step
    code = "\n".join(line.split("#", 1)[0] for line in script.splitlines())
    assert "--endpoint-url" not in code                          # the profile carries it,
    assert not re.search(r"127\.0\.0\.1|:8080|localhost", code)    # so no port is written

    env = readme_env(cloud, home)
    sh = run_readme(script, cloud, home, timeout=600)
    assert sh.returncode == 0, f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"

    demo = home / "lxcloud-demo"
    assert (demo / "mykey.pem").read_text().startswith("-----BEGIN")
    assert (demo / "init.sh").read_text().startswith("#!/bin/sh\n")
    assert "endpoint_url = http://127.0.0.1:" in (home / ".aws/config").read_text()
    assert (home / ".aws/credentials").stat().st_mode & 0o077 == 0
    # the describe line: the instance running with an address and the key pair
    running = re.search(r"^(i-[0-9a-f]{17})\trunning\t(\d+\.\d+\.\d+\.\d+)\tmykey$", sh.stdout, re.M)
    assert running, sh.stdout
    iid = running.group(1)
    assert re.search(rf"^TERMINATINGINSTANCES\t{iid}$", sh.stdout, re.M), sh.stdout

    (py,) = blocks("python")
    boto = subprocess.run([sys.executable, "-c", py], cwd=home, env=env, capture_output=True,
                          text=True, timeout=120)
    assert boto.returncode == 0, boto.stderr
    assert re.search(rf"^{iid} (shutting-down|terminated) ", boto.stdout, re.M), boto.stdout
