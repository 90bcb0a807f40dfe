"""README's EC2 walkthrough, run as written: its ```sh block with bash, then its boto3 block, as
a new user would (a fresh HOME, the venv's bin on PATH), against a real `lxcloud up`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import VENV_BIN, Cloud

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


def user_env(cloud: Cloud, home: Path) -> dict[str, str]:
    """A new user's environment: a fresh HOME, the venv's bin on PATH, the cloud's data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LXCLOUD_", "AWS_"))}
    env.update(HOME=str(home), LXCLOUD_DATA_DIR=str(cloud.data_dir),
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    return env


def run_as_user(cloud: Cloud, home: Path, script: str, timeout: float
                ) -> subprocess.CompletedProcess[str]:
    """A README script run with bash in `home` as a new user would
    (-e: every command of it must succeed; -o pipefail: in pipes too)."""
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=home,
                          env=user_env(cloud, home), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_walkthrough_runs_as_written(cloud: Cloud, home: Path) -> None:
    (script,) = blocks("sh")
    for step in ("--write-aws-profile", "create-key-pair --key-name mykey", "cat > init.sh",
                 "describe-images", "run-instances", "wait instance-running", "terminate-instances"):
        assert step in script, step
    code = "\n".join(line.split("#", 1)[0] for line in script.splitlines())
    assert "--endpoint-url" not in code                          # the profile carries it,
    assert not re.search(r"127\.0\.0\.1|:8080|localhost", code)    # so no port is written

    sh = run_as_user(cloud, home, script, 600)
    env = user_env(cloud, home)
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
