"""The dir pool's quota backends without root: project ids and the xfs_quota commands (this
kernel cannot mount a filesystem with project quotas, so the commands are what is checked),
and the plain-directory backend's refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lxcloud.core.errors import InvalidInput, Unsupported
from lxcloud.drivers.storage.quota import (
    DirAreas,
    Owner,
    ProjectAreas,
    fmt_bytes,
    has_capability,
    journal_size,
)

MiB = 1 << 20
ME = Owner(os.getuid(), os.getgid())


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> None:
        self.calls.append(argv)


def project_pool(tmp_path: Path, fstype: str = "xfs") -> tuple[ProjectAreas, Recorder]:
    (tmp_path / "locks").mkdir()
    rec = Recorder()
    return ProjectAreas(tmp_path, Path("/mnt/pool"), fstype, runner=rec), rec


def test_each_area_gets_its_own_project_and_limit(tmp_path: Path) -> None:
    areas, rec = project_pool(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    areas.make(a, 64 * MiB, ME, dirs=("upper", "work"))
    areas.make(b, 32 * MiB, ME)
    assert areas.project_id(a) == 10000 and areas.project_id(b) == 10001
    assert rec.calls[0] == ["xfs_quota", "-x", "-c", f"project -s -p {a} 10000",
                            "-c", f"limit -p bhard={64 * MiB} 10000", "/mnt/pool"]
    areas.remove(a, "a")
    assert areas.project_id(a) is None and not a.exists()
    assert rec.calls[-1] == ["xfs_quota", "-x", "-c", "limit -p bhard=0 10000", "/mnt/pool"]
    c = tmp_path / "c"
    areas.make(c, MiB * 16, ME)
    assert areas.project_id(c) == 10000          # a freed id is used again
    # the ids outlive this object: they are the pool's
    again = ProjectAreas(tmp_path, Path("/mnt/pool"), "xfs")
    assert again.project_id(b) == 10001


def test_ext4_is_a_foreign_filesystem_to_xfs_quota(tmp_path: Path) -> None:
    areas, rec = project_pool(tmp_path, "ext4")
    areas.make(tmp_path / "a", 64 * MiB, ME)
    assert rec.calls[0][:3] == ["xfs_quota", "-x", "-f"]


def test_an_unlimited_area_has_no_project_until_a_limit_is_asked(tmp_path: Path) -> None:
    areas, rec = project_pool(tmp_path)
    a = tmp_path / "a"
    areas.make(a, 0, ME)
    assert areas.project_id(a) is None and rec.calls == []
    (a / "f").write_bytes(b"x" * MiB)
    with pytest.raises(InvalidInput, match="uses 1.0 MiB"):
        areas.resize(a, 4096, "the root of i-1")
    areas.resize(a, 64 * MiB, "the root of i-1")
    assert areas.project_id(a) == 10000


def test_a_failed_tagging_frees_its_id(tmp_path: Path) -> None:
    def refuse(argv: list[str]) -> None:
        raise RuntimeError("xfs_quota: cannot set project")

    (tmp_path / "locks").mkdir()
    areas = ProjectAreas(tmp_path, Path("/mnt/pool"), "xfs", runner=refuse)
    with pytest.raises(RuntimeError):
        areas.make(tmp_path / "a", 64 * MiB, ME)
    assert not (tmp_path / "a").exists() and areas.project_id(tmp_path / "a") is None


def test_a_plain_directory_says_it_cannot_limit(tmp_path: Path) -> None:
    areas = DirAreas(tmp_path)
    assert not areas.quota and "cannot be enforced" in areas.note
    areas.make(tmp_path / "v", 64 * MiB, ME)
    with pytest.raises(Unsupported, match="cannot be enforced"):
        areas.resize(tmp_path / "v", 32 * MiB, "volume v")
    assert areas.limit(tmp_path / "v") == 0


def test_small_helpers() -> None:
    assert journal_size(16 * MiB) == 4 and journal_size(4 << 30) == 16 and journal_size(1 << 40) == 64
    assert fmt_bytes(3 * MiB // 2) == "1.5 MiB" and fmt_bytes(10) == "10 B"
    assert has_capability(0) in (True, False)
    assert not has_capability(63)               # no such capability
