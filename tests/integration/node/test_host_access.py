"""The containers' mapped root can reach a data dir made private (0700, as `mktemp -d` makes it,
or below 0700 /root): the data dir gets 0711, a locked ancestor one ACL entry for that uid
alone; where no ACL can be set, start is refused naming the directory and the fix."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.core.errors import DriverError
from lxcloud.core.proc import run
from lxcloud.node.host import _first_unsearchable, ensure_traversable
from tests.integration.conftest import IDMAP

UID, GID = IDMAP.host_uid, IDMAP.host_gid


def acl(path: Path) -> str:
    return run(["getfacl", "-cp", str(path)]).stdout.decode()


def reachable(d: Path) -> bool:
    return _first_unsearchable([*reversed(d.parents), d], UID, GID) is None


@pytest.fixture
def locked() -> Iterator[Path]:
    """A 0700 directory (what mkdtemp makes), removed with any ACL it was given."""
    d = Path(tempfile.mkdtemp(prefix="lxcloud-locked-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_private_data_dir_below_a_private_parent_is_made_reachable(locked: Path) -> None:
    data = Path(tempfile.mkdtemp(dir=locked))
    assert stat.S_IMODE(locked.stat().st_mode) == stat.S_IMODE(data.stat().st_mode) == 0o700
    assert not reachable(data)

    granted = ensure_traversable(data, UID, GID)

    assert granted == [f"setfacl -m u:{UID}:x {locked}", f"chmod 711 {data}"]
    assert reachable(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o711
    entries = acl(locked).split()
    assert f"user:{UID}:--x" in entries and "other::---" in entries   # that uid, search only
    assert "group::---" in entries                                     # nobody else gains
    assert ensure_traversable(data, UID, GID) == []                     # idempotent


def test_an_open_path_is_left_alone(locked: Path) -> None:
    locked.chmod(0o755)
    data = locked / "data"
    data.mkdir(mode=0o755)
    assert ensure_traversable(data, UID, GID) == []
    assert f"user:{UID}" not in acl(locked)
    assert stat.S_IMODE(data.stat().st_mode) == 0o755


def test_refused_where_no_acl_can_be_set(locked: Path) -> None:
    # ramfs keeps no extended attributes, so no ACL: the fix must be left to the admin
    mnt = locked / "ramfs"
    mnt.mkdir()
    run(["mount", "-t", "ramfs", "-o", "mode=0700", "ramfs", str(mnt)])
    try:
        data = mnt / "data"
        data.mkdir(mode=0o700)
        os.chmod(locked, 0o755)
        with pytest.raises(DriverError) as ei:
            ensure_traversable(data, UID, GID)
        msg = str(ei.value)
        assert str(mnt) in msg and f"chmod o+x {mnt}" in msg and "--data-dir" in msg
        assert stat.S_IMODE(data.stat().st_mode) == 0o700       # nothing changed
        os.chmod(mnt, 0o711)                                   # the admin's fix works
        assert ensure_traversable(data, UID, GID) == [f"chmod 711 {data}"]
        assert reachable(data)
    finally:
        run(["umount", str(mnt)], check=False)
