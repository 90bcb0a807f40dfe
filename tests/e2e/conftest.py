"""e2e fixtures: a whole `lxcloud up` in its own data dir and port, driven through the CLI."""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

VENV_BIN = Path(sys.executable).parent
LXCLOUD = str(VENV_BIN / "lxcloud")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cloud:
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LXCLOUD_")}
        env["LXCLOUD_DATA_DIR"] = str(self.data_dir)
        return env

    def start(self) -> None:
        """Runs `lxcloud up` and returns once it says it is up: its API socket listens before
        that line is printed, so nothing has to poll. Its output is copied to self.log."""
        self.proc = subprocess.Popen([LXCLOUD, "up", "--listen", f"127.0.0.1:{self.port}"],
                                     env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        said: queue.Queue[bool] = queue.Queue()
        threading.Thread(target=self._copy_output, args=(self.proc, said), daemon=True).start()
        try:
            up = said.get(timeout=60)        # True: the banner; False: it exited first
        except queue.Empty:
            up = False
        if not up:
            self.stop()
            raise AssertionError(f"lxcloud up did not come up: {self.log.read_text()[-3000:]}")
        assert httpx.get(f"{self.url}/healthz", timeout=10).status_code == 200

    def _copy_output(self, proc: subprocess.Popen[bytes], said: queue.Queue[bool]) -> None:
        assert proc.stdout is not None
        told = pending = False
        with open(self.log, "ab") as logf:
            for line in proc.stdout:
                logf.write(line)
                logf.flush()
                if not told and line.startswith(b"lxcloud is up"):
                    # the banner's other lines follow at once: signal after the whole block
                    told = True
                    pending = True
                elif told and pending and b"aws CLI profile" in line:
                    said.put(True)
                    pending = False
        if not told or pending:
            said.put(False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cli(self, *args: str, check: bool = True, input: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        # no inherited stdin: `lxcloud exec` forwards a non-terminal stdin, and CI's may never close
        extra: dict[str, Any] = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        cp = subprocess.run([LXCLOUD, *args], env=self.env, capture_output=True, text=True,
                            timeout=timeout, **extra)
        if check and cp.returncode != 0:
            raise AssertionError(f"lxcloud {' '.join(args)} exited {cp.returncode}:\n"
                                 f"{cp.stdout}\n{cp.stderr}")
        return cp

    def json(self, *args: str) -> object:
        return json.loads(self.cli(*args, "--json").stdout)


@contextmanager
def running_cloud(prefix: str, config: dict[str, Any] | None = None,
                  purge_timeout: float = 300) -> Iterator[Cloud]:
    """`lxcloud up` in a new data dir under /tmp (with `config` as its config.json), purged
    and removed afterwards whatever happened."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(base, 0o755)
    c = Cloud(data_dir=base / "data", port=free_port())
    if config:
        c.data_dir.mkdir()
        (c.data_dir / "config.json").write_text(json.dumps(config))
    try:
        c.start()
        yield c
    finally:
        c.stop()
        subprocess.run([LXCLOUD, "purge", "--yes"], env=c.env, capture_output=True,
                       timeout=purge_timeout)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with running_cloud("lxcloud-e2e-", purge_timeout=120) as c:
        yield c


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh HOME for a README block, as a new user has."""
    d = Path(tempfile.mkdtemp(prefix="lxcloud-home-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def readme_env(cloud: Cloud, home: Path) -> dict[str, str]:
    """A new user's environment: `home`, the venv's bin on PATH, the cloud found by its data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LXCLOUD_", "AWS_"))}
    env.update(HOME=str(home), LXCLOUD_DATA_DIR=str(cloud.data_dir),
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    return env


def run_readme(script: str, cloud: Cloud, home: Path,
               timeout: float) -> subprocess.CompletedProcess[str]:
    """A README block run with bash in `home` (readme_env); -e: every command of it must
    succeed; -o pipefail: in pipes too."""
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=home,
                          env=readme_env(cloud, home), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keeps each phase's report on the test item (rep_call…): a fixture's teardown can then
    tell that its test failed (the browser's screenshot on failure)."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)
