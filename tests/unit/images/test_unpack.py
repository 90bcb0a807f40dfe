"""Tar safety: hostile archives are refused by name, good ones extract exactly, in every compression."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from lxcloud.core.errors import InvalidInput
from lxcloud.images.unpack import ArchiveInfo, check_archive, open_archive, safe_extract

IS_ROOT = os.geteuid() == 0
MTIME = 1_600_000_000
# A 64-byte ELF header: 64-bit little-endian x86-64.
ELF_AMD64 = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (0x3E).to_bytes(2, "little") + b"\x00" * 44
ELF_I386 = b"\x7fELF\x01\x01\x01" + b"\x00" * 11 + (0x03).to_bytes(2, "little") + b"\x00" * 44

Member = tuple[tarfile.TarInfo, bytes | None]


def ti(name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
       link: str = "", mtime: int = MTIME) -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type, t.mode, t.uid, t.gid, t.linkname, t.mtime = kind, mode, uid, gid, link, mtime
    return t


def f(name: str, data: bytes = b"data", **kw: object) -> Member:
    return ti(name, **kw), data  # type: ignore[arg-type]


def d(name: str, mode: int = 0o755, **kw: object) -> Member:
    return ti(name, tarfile.DIRTYPE, mode=mode, **kw), None  # type: ignore[arg-type]


def sym(name: str, target: str) -> Member:
    return ti(name, tarfile.SYMTYPE, mode=0o777, link=target), None


def hard(name: str, target: str) -> Member:
    return ti(name, tarfile.LNKTYPE, link=target), None


def tar_bytes(members: list[Member], fmt: str = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "tar": lambda b: b,
    "tar.gz": lambda b: gzip.compress(b),
    "tar.xz": lambda b: lzma.compress(b),
    "tar.zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


def write(tmp_path: Path, members: list[Member], fmt: str = "tar", name: str | None = None) -> Path:
    p = tmp_path / (name or f"archive.{fmt}")
    p.write_bytes(COMPRESS[fmt](tar_bytes(members)))
    return p


def good_members() -> list[Member]:
    return [
        d("./"),
        d("./etc"),
        f("./etc/os-release", b'PRETTY_NAME="Debian GNU/Linux 12"\nID=debian\nVERSION_CODENAME=bookworm\n'),
        sym("./etc/mtab", "/proc/mounts"),  # pointing outside is legal: never followed
        d("./usr/bin"),  # ./usr is implicit
        f("./usr/bin/prog", ELF_AMD64 + b"rest", mode=0o755),
        f("./usr/bin/passwd", b"suid", mode=0o4755),
        f("./usr/bin/wall", b"sgid", mode=0o2755, gid=5),
        hard("./usr/bin/prog2", "./usr/bin/prog"),
        d("./usr/sbin"),
        sym("./usr/sbin/init", "../lib/systemd/systemd"),
        d("./usr/lib/systemd"),
        f("./usr/lib/systemd/systemd", ELF_AMD64, mode=0o755),
        sym("./sbin", "usr/sbin"),
        d("./home/user", mode=0o700, uid=1000, gid=1000, mtime=MTIME + 5),
        f("./home/user/.profile", b"x" * 3000, mode=0o600, uid=1000, gid=1000, mtime=MTIME + 7),
        f("./big", os.urandom(3 << 20)),  # spans several read chunks
        (ti("./dev/null", tarfile.CHRTYPE, mode=0o666), None),
        (ti("./dev/fifo", tarfile.FIFOTYPE, mode=0o600), None),
        f("./empty", b""),
    ]


# ---------------------------------------------------------------------------------------------
# Good archives


@pytest.fixture(autouse=True)
def chown_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: chown to other ids is not permitted, so make it a no-op (ownership unchecked)."""
    if not IS_ROOT:
        monkeypatch.setattr(os, "fchown", lambda *a, **k: None)
        monkeypatch.setattr(os, "chown", lambda *a, **k: None)


@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "tar.xz", "tar.zst"])
def test_good_archive_checks_and_extracts_with_shift(tmp_path: Path, fmt: str, chown_ok: None) -> None:
    members = good_members()
    # A misleading name: detection is by content.
    src = write(tmp_path, members, fmt, name="image.bin")
    info = check_archive(src)
    assert info == ArchiveInfo(
        format=fmt, size=src.stat().st_size, sha256=hashlib.sha256(src.read_bytes()).hexdigest(),
        entries=len(members), os="debian", release="bookworm", architecture="amd64",
        init="/sbin/init", halt_signal="SIGRTMIN+3", min_memory=128 * 1024**2,
        unpacked_size=sum(len(b) for t, b in members if b is not None and t.isreg()), skipped=2)

    assert dict(info)["sha256"] == info.sha256 and dict(info)["os"] == "debian"

    dest = tmp_path / "root"
    seen: list[tuple[int, int]] = []
    got = safe_extract(src, dest, uid_shift=100000, gid_shift=200000,
                       progress=lambda done, total: seen.append((done, total)))
    assert got == info
    assert seen and seen[-1] == (info.size, info.size)

    assert (dest / "etc/os-release").read_bytes().startswith(b"PRETTY_NAME")
    assert (dest / "big").read_bytes() == members[16][1]
    assert (dest / "empty").read_bytes() == b""
    assert os.readlink(dest / "etc/mtab") == "/proc/mounts"
    assert os.readlink(dest / "sbin") == "usr/sbin"
    assert (dest / "sbin/init").resolve() == (dest / "usr/lib/systemd/systemd").resolve()
    prog, prog2 = (dest / "usr/bin/prog").stat(), (dest / "usr/bin/prog2").stat()
    assert prog.st_ino == prog2.st_ino and prog.st_nlink == 2
    assert not (dest / "dev/null").exists() and not (dest / "dev/fifo").exists()
    assert (dest / "dev").is_dir()

    st = (dest / "usr/bin/passwd").stat()
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert stat.S_IMODE((dest / "usr/bin/wall").stat().st_mode) == 0o2755
    assert stat.S_IMODE((dest / "home/user").stat().st_mode) == 0o700
    assert stat.S_IMODE((dest / "usr").stat().st_mode) == 0o755  # implicit
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert (dest / "home/user").stat().st_mtime == MTIME + 5  # set after its contents
    assert (dest / "home/user/.profile").stat().st_mtime == MTIME + 7
    assert os.lstat(dest / "etc/mtab").st_mtime == MTIME

    if not IS_ROOT:
        return  # ownership needs root (lchown to other ids)
    assert (st.st_uid, st.st_gid) == (100000, 200000)
    assert (dest / "usr/bin/wall").stat().st_gid == 200005
    u = (dest / "home/user/.profile").stat()
    assert (u.st_uid, u.st_gid) == (101000, 201000)
    h = (dest / "home/user").stat()
    assert (h.st_uid, h.st_gid) == (101000, 201000)
    ln = os.lstat(dest / "etc/mtab")
    assert (ln.st_uid, ln.st_gid) == (100000, 200000)
    assert (dest.stat().st_uid, (dest / "usr").stat().st_uid) == (100000, 100000)
    # Every entry was shifted: nothing below the shift is left.
    for root, dirs, files in os.walk(dest):
        for n in dirs + files:
            assert os.lstat(os.path.join(root, n)).st_uid >= 100000, n


def test_pax_format_and_i386_busybox_guess(tmp_path: Path) -> None:
    members = [d("bin"), f("bin/busybox", ELF_I386, mode=0o755), hard("bin/sh", "bin/busybox"),
               d("sbin"), sym("sbin/init", "../bin/busybox")]
    p = tmp_path / "bb.tar"
    p.write_bytes(tar_bytes(members, tarfile.PAX_FORMAT))
    info = check_archive(p)
    assert (info.os, info.release, info.architecture) == ("busybox", None, "i386")
    assert (info.init, info.halt_signal) == ("/sbin/init", "SIGUSR1")


def test_no_init_and_no_facts(tmp_path: Path) -> None:
    info = check_archive(write(tmp_path, [f("hello.txt", b"hi")]))
    assert (info.os, info.architecture, info.init, info.halt_signal) == (None, None, None, None)
    assert info.entries == 1


def test_open_archive_detects_by_magic(tmp_path: Path) -> None:
    p = write(tmp_path, [f("a", b"1"), f("b", b"2")], "tar.xz", name="misnamed.tar.gz")
    with open_archive(p) as tf:
        assert [m.name for m in tf] == ["a", "b"]


def test_extract_refuses_non_empty_dest(tmp_path: Path) -> None:
    src = write(tmp_path, [f("a")])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "already").write_text("x")
    with pytest.raises(InvalidInput, match="not empty"):
        safe_extract(src, dest)


def test_repeated_entry_replaces_file(tmp_path: Path, chown_ok: None) -> None:
    src = write(tmp_path, [f("a", b"old"), f("a", b"new"), sym("l", "x"), f("l", b"file now")])
    dest = tmp_path / "dest"
    safe_extract(src, dest)
    assert (dest / "a").read_bytes() == b"new"
    assert not (dest / "l").is_symlink() and (dest / "l").read_bytes() == b"file now"


# ---------------------------------------------------------------------------------------------
# Hostile archives: refused by check_archive AND by safe_extract (which must not trust a check),
# with the offending entry named, and nothing written outside dest.

HOSTILE: dict[str, tuple[list[Member], str]] = {
    "dotdot": ([f("../evil")], "../evil"),
    "dotdot-inner": ([d("a"), f("a/../../evil")], "a/../../evil"),
    "absolute": ([f("/etc/passwd")], "/etc/passwd"),
    "hardlink-escape": ([hard("x", "../../etc/shadow")], "x"),
    "hardlink-absolute": ([hard("x", "/etc/shadow")], "x"),
    "hardlink-absent": ([f("a"), hard("x", "nothere")], "x"),
    "hardlink-to-dir": ([d("dir"), hard("x", "dir")], "x"),
    "through-symlink": ([sym("link", "/etc"), f("link/passwd", b"pwned")], "link/passwd"),
    "through-relative-symlink": ([d("a"), sym("a/up", ".."), f("a/up/b/c")], "a/up/b/c"),
    "through-nested-symlink": ([d("a/b"), sym("a/b/l", "/"), d("a/b/l/etc")], "a/b/l/etc"),
    "hardlink-through-symlink": ([sym("l", "/etc"), hard("x", "l/shadow")], "x"),
    "dir-replaced-by-symlink": ([d("etc"), sym("etc", "/etc")], "etc"),
    "parent-is-file": ([f("a"), f("a/b")], "a/b"),
    "uid-too-big": ([f("a", uid=70000)], "a"),
    "gid-too-big": ([f("b", gid=65536)], "b"),
    "root-not-dir": ([f("./")], "./"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("fmt", ["tar", "tar.zst"])
def test_hostile_entries_refused(tmp_path: Path, kind: str, fmt: str, chown_ok: None) -> None:
    members, bad_name = HOSTILE[kind]
    src = write(tmp_path, members, fmt)
    with pytest.raises(InvalidInput) as ei:
        check_archive(src)
    assert repr(bad_name) in str(ei.value)
    dest = tmp_path / "dest"
    with pytest.raises(InvalidInput) as ei:
        safe_extract(src, dest)
    assert repr(bad_name) in str(ei.value)


def test_extract_never_writes_through_symlink(tmp_path: Path, chown_ok: None) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    src = write(tmp_path, [sym("link", str(outside)), f("link/pwned", b"x"),
                           f("after", b"never reached")])
    dest = tmp_path / "dest"
    with pytest.raises(InvalidInput, match="placed through symlink 'link'"):
        safe_extract(src, dest)
    assert list(outside.iterdir()) == []
    assert os.readlink(dest / "link") == str(outside)  # it was created, never followed


def test_not_a_tar(tmp_path: Path) -> None:
    cases = {
        "empty": b"",
        "text": b"hello world, definitely not a tarball\n" * 40,
        "gzip-of-text": gzip.compress(b"just text, no tar header here\n" * 40),
        "zst-of-text": zstandard.ZstdCompressor().compress(b"plain text\n" * 100),
        "bzip2": b"BZh91AY&SY" + b"\x00" * 600,
        "empty-tar": b"\x00" * 10240,
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(InvalidInput) as ei:
            check_archive(p)
        assert "not a tar" in str(ei.value) or "empty" in str(ei.value), name
        with pytest.raises(InvalidInput):
            safe_extract(p, tmp_path / f"dest-{name}")


def _two_file_tar() -> tuple[bytes, int]:
    """A tar of two 2000-byte files and the offset where the second member starts."""
    raw = tar_bytes([f("one", b"1" * 2000), f("two", b"2" * 2000)])
    return raw, 512 + 4 * 512


@pytest.mark.parametrize("cut", ["mid-data", "member-boundary", "mid-header", "no-end-marker"])
def test_truncated_plain_tar(tmp_path: Path, cut: str) -> None:
    raw, second = _two_file_tar()
    at = {"mid-data": 1000, "member-boundary": second, "mid-header": second + 100,
          "no-end-marker": second + 512 + 4 * 512}[cut]
    p = tmp_path / "cut.tar"
    p.write_bytes(raw[:at])
    with pytest.raises(InvalidInput, match="truncated|corrupt"):
        check_archive(p)
    with pytest.raises(InvalidInput, match="truncated|corrupt"):
        safe_extract(p, tmp_path / "dest")


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.xz", "tar.zst"])
def test_truncated_compressed(tmp_path: Path, fmt: str) -> None:
    data = COMPRESS[fmt](tar_bytes([f("a", os.urandom(200_000)), f("b", os.urandom(200_000))]))
    p = tmp_path / f"cut.{fmt}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match="truncated|corrupt"):
        check_archive(p)
    with pytest.raises(InvalidInput, match="truncated|corrupt"):
        safe_extract(p, tmp_path / "dest")


@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "tar.xz", "tar.zst"])
def test_corrupt_middle(tmp_path: Path, fmt: str) -> None:
    # Text-like content so a flipped byte in a header area or compressed stream is detected.
    members = [f(f"file{i}", (f"line {i}\n" * 300).encode()) for i in range(20)]
    data = bytearray(COMPRESS[fmt](tar_bytes(members)))
    if fmt == "tar":
        data[512 * 12: 512 * 13] = b"\xff" * 512  # garbage where the third header is
    else:
        mid = len(data) // 2
        data[mid: mid + 16] = bytes(b ^ 0xFF for b in data[mid: mid + 16])
    p = tmp_path / f"bad.{fmt}"
    p.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match="corrupt|truncated"):
        check_archive(p)


def test_missing_file_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        check_archive(tmp_path / "nope.tar")
