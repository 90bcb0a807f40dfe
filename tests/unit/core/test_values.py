"""Ids, names, sizes, instance types and limits."""

from __future__ import annotations

import pytest

from lxcloud.core.errors import InvalidInput, NotFound
from lxcloud.core.ids import is_id, new_id, valid_name
from lxcloud.core.instance_types import get_type, resolve_limits
from lxcloud.core.units import format_size, parse_size


def test_ids_look_like_ec2() -> None:
    i = new_id("instance")
    assert i.startswith("i-") and len(i) == 19 and is_id(i, "instance") and not is_id(i, "image")
    assert new_id("image").startswith("ami-")
    assert len({new_id("instance") for _ in range(1000)}) == 1000


@pytest.mark.parametrize("name,ok", [("web1", True), ("a", True), ("a-b-c", True), ("1abc", False),
                                     ("a_b", False), ("a-", False), ("x" * 64, False), ("", False),
                                     ("i-0123456789abcdef0", False)])
def test_names(name: str, ok: bool) -> None:
    assert valid_name(name) is ok


@pytest.mark.parametrize("text,n", [("256MiB", 256 << 20), ("1G", 1 << 30), ("512", 512),
                                    ("1.5GiB", 3 << 29), ("64m", 64 << 20), ("1GB", 10**9)])
def test_sizes(text: str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["lots", "-1M", "1 parsec", "", "1.2.3G"])
def test_bad_sizes(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_size(bad, "memory")


def test_format_size() -> None:
    assert format_size(256 << 20) == "256MiB"
    assert format_size(1536 << 20) == "1536MiB"
    assert format_size((3 << 29) + 1) == "1.5GiB"


def test_types_and_limits() -> None:
    t = get_type("t3.micro")
    lim = resolve_limits(t, memory=128 << 20, vcpus=0.25)
    assert (lim.memory, lim.vcpus, lim.pids) == (128 << 20, 0.25, t.pids)
    with pytest.raises(NotFound):
        get_type("m9.galactic")
    with pytest.raises(InvalidInput):
        resolve_limits(t, memory=1 << 20)
    with pytest.raises(InvalidInput):
        resolve_limits(t, vcpus=0)
