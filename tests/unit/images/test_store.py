"""The template library: atomic imports, nothing left behind on failure."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import zstandard

from lxcloud.core.errors import InvalidInput, NotFound
from lxcloud.images import store as store_mod
from lxcloud.images.store import TemplateStore


def make_tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in entries.items():
            t = tarfile.TarInfo(name)
            t.size = len(data)
            tf.addfile(t, io.BytesIO(data))
    return buf.getvalue()


def listing(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.exists() else {}


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    return TemplateStore(tmp_path / "templates")


def test_import_good_zst(store: TemplateStore, tmp_path: Path) -> None:
    data = zstandard.ZstdCompressor().compress(make_tar({"etc/hostname": b"x\n"}))
    src = tmp_path / "upload.bin"
    src.write_bytes(data)
    info = store.import_file(src, "img-0001")
    assert info.format == "tar.zst" and info.sha256 == hashlib.sha256(data).hexdigest()
    assert store.exists("img-0001")
    assert store.path("img-0001") == store.dir / "img-0001.tar.zst"
    assert store.path("img-0001").read_bytes() == data
    assert listing(store.dir).keys() == {"img-0001.tar.zst"}  # no temp file left
    assert src.exists()  # a copy, the source is untouched


def test_reimport_other_format_replaces(store: TemplateStore, tmp_path: Path) -> None:
    src = tmp_path / "a"
    src.write_bytes(make_tar({"a": b"1"}))
    store.import_file(src, "img-1")
    src.write_bytes(zstandard.ZstdCompressor().compress(make_tar({"a": b"2"})))
    store.import_file(src, "img-1")
    assert sorted(listing(store.dir)) == ["img-1.tar.zst"]


def test_delete_and_missing(store: TemplateStore, tmp_path: Path) -> None:
    src = tmp_path / "a.tar"
    src.write_bytes(make_tar({"a": b"1"}))
    store.import_file(src, "img-2")
    store.delete("img-2")
    assert not store.exists("img-2")
    store.delete("img-2")  # missing: no-op
    with pytest.raises(NotFound):
        store.path("img-2")


@pytest.mark.parametrize("content", [
    b"not a tarball at all" * 50,
    make_tar({"../escape": b"x"}),
    make_tar({"a": b"1" * 5000})[:1500],  # truncated
])
def test_failed_import_leaves_dir_as_it_was(store: TemplateStore, tmp_path: Path, content: bytes) -> None:
    good = tmp_path / "good.tar"
    good.write_bytes(make_tar({"keep": b"me"}))
    store.import_file(good, "img-keep")
    before = listing(store.dir)
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    with pytest.raises(InvalidInput):
        store.import_file(bad, "img-bad")
    with pytest.raises(InvalidInput):
        store.import_file(bad, "img-keep")  # a failed re-import keeps the old template
    assert listing(store.dir) == before


def test_failure_during_copy_removes_temp(store: TemplateStore, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.tar"
    src.write_bytes(make_tar({"a": b"1"}))
    store.import_file(src, "img-old")
    before = listing(store.dir)

    def boom(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_mod.os, "fsync", boom)
    with pytest.raises(OSError):
        store.import_file(src, "img-new")
    assert listing(store.dir) == before


def test_source_changed_after_check_is_refused(store: TemplateStore, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.tar"
    src.write_bytes(make_tar({"a": b"1"}))
    real_check = store_mod.check_archive

    def check_then_swap(p: Path):  # type: ignore[no-untyped-def]
        info = real_check(p)
        src.write_bytes(make_tar({"a": b"2"}))
        return info

    monkeypatch.setattr(store_mod, "check_archive", check_then_swap)
    with pytest.raises(InvalidInput, match="changed"):
        store.import_file(src, "img-race")
    assert listing(store.dir) == {}


@pytest.mark.parametrize("bad_id", ["", "../x", "a/b", ".hidden", "x" * 200, "a..b"])
def test_bad_ids_refused(store: TemplateStore, bad_id: str) -> None:
    with pytest.raises(InvalidInput):
        store.exists(bad_id)
