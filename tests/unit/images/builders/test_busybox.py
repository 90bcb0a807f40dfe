"""The busybox image's tree: every applet of the host's busybox at its own path, and a shell
stand-in for each common tool this busybox has no applet for (and only for those)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.images.builders import busybox
from lxcloud.images.builders.busybox_fallbacks import FALLBACKS

pytestmark = pytest.mark.skipif(not busybox.BUSYBOX.exists(), reason="busybox-static missing")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("bbtree")
    busybox.build_busybox_tree(d / "root")
    yield d / "root"
    shutil.rmtree(d, ignore_errors=True)


def host_applets() -> list[str]:
    out = subprocess.run([str(busybox.BUSYBOX), "--list-full"], capture_output=True, text=True,
                         check=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_every_applet_is_installed_at_its_path(tree: Path) -> None:
    ours = {rel for rel, (text, _) in busybox.FILES.items() if text.startswith("#!")}
    applets = host_applets()
    assert len(applets) > 250     # the whole busybox, not a handful
    missing = []
    for rel in applets:
        p = tree / rel
        if rel == "bin/busybox":
            assert p.is_file() and not p.is_symlink()
        elif rel in ours:           # free and uptime: our scripts read lxcfs's /proc
            assert p.is_file() and os.access(p, os.X_OK), rel
        elif not (p.is_symlink() and os.readlink(p) == "/bin/busybox"):
            missing.append(rel)
    assert missing == []


def test_stand_ins_only_for_what_busybox_lacks(tree: Path) -> None:
    names = {Path(a).name for a in host_applets()}
    for name, text in FALLBACKS.items():
        p = tree / "usr/bin" / name
        if name in names:
            assert not p.is_file() or p.is_symlink(), f"{name}: the applet must win"
            continue
        assert p.read_text() == text and p.stat().st_mode & 0o777 == 0o755, name
        # valid to busybox's own shell, which runs it in the image
        check = subprocess.run([str(busybox.BUSYBOX), "sh", "-n", str(p)], capture_output=True,
                               text=True)
        assert check.returncode == 0, (name, check.stderr)
    # the tools people expect are there one way or the other
    for tool in ("nohup", "nproc", "timeout", "seq", "pgrep", "pkill", "install", "nice",
                 "mountpoint", "xargs", "wget", "realpath", "mktemp", "base64", "sha256sum"):
        assert (tree / "usr/bin" / tool).exists() or any(
            (tree / d / tool).exists() for d in ("bin", "sbin", "usr/sbin")), tool
