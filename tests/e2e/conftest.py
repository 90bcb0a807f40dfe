"""e2e fixtures: a whole `lxcloud up` in its own data dir and port, driven through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


def wait_for(cond, timeout: float, what: str, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


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
        logf = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([LXCLOUD, "up", "--listen", f"127.0.0.1:{self.port}"],
                                     env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"lxcloud up exited: {self.log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(healthy, 60, "lxcloud up to answer /healthz", 0.1)

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


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    base = Path(tempfile.mkdtemp(prefix="lxcloud-e2e-", dir="/tmp"))
    os.chmod(base, 0o755)
    c = Cloud(data_dir=base / "data", port=free_port())
    try:
        c.start()
        yield c
    finally:
        c.stop()
        subprocess.run([LXCLOUD, "purge", "--yes"], env=c.env, capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)
