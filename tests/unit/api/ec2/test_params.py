"""Query-protocol inputs: flattened parameters and MaxResults/NextToken pagination."""

from __future__ import annotations

import pytest

from lxcloud.api.ec2 import pagination
from lxcloud.api.ec2.errors import Ec2Error
from lxcloud.api.ec2.params import Params


def _code(fn, *args, **kw) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(Ec2Error) as e:
        fn(*args, **kw)
    return e.value.code, e.value.message


# --- scalars --------------------------------------------------------------------------------

def test_str_required_and_default() -> None:
    p = Params({"ImageId": "ami-1", "Empty": ""})
    assert p.str("ImageId") == "ami-1" and p.req("ImageId") == "ami-1"
    assert p.str("Empty") == ""
    assert p.str("KeyName") is None and p.str("KeyName", default="k") == "k"
    assert _code(p.str, "KeyName", required=True) == (
        "MissingParameter", "The request must contain the parameter KeyName")


def test_int_parsing_and_bounds() -> None:
    p = Params({"MinCount": "2", "MaxCount": "x", "Big": "5000"})
    assert p.int("MinCount", 1, 100) == 2
    assert p.int("Absent") is None and p.int("Absent", default=7) == 7
    assert _code(p.int, "MaxCount")[0] == "InvalidParameterValue"
    code, message = _code(p.int, "Big", 5, 1000)
    assert code == "InvalidParameterValue" and "'5000'" in message and "Big" in message
    assert _code(p.int, "Absent", required=True)[0] == "MissingParameter"


@pytest.mark.parametrize("text, expected", [("true", True), ("TRUE", True), ("false", False),
                                             ("False", False)])
def test_bool(text: str, expected: bool) -> None:
    assert Params({"Force": text}).bool("Force") is expected


def test_bool_invalid_and_default() -> None:
    assert Params({}).bool("Force") is False and Params({}).bool("Force", default=True) is True
    assert _code(Params({"Force": "yes"}).bool, "Force")[0] == "InvalidParameterValue"


def test_dry_run() -> None:
    assert Params({"DryRun": "true"}).dry_run() is True
    assert Params({}).dry_run() is False
    assert _code(Params({"DryRun": "1"}).dry_run)[0] == "InvalidParameterValue"


# --- lists and structures ------------------------------------------------------------------------

def test_list_orders_numerically() -> None:
    p = Params({"InstanceId.10": "i-10", "InstanceId.2": "i-2", "InstanceId.1": "i-1",
                "InstanceIdX.1": "no", "Other": "x"})
    assert p.list("InstanceId") == ["i-1", "i-2", "i-10"]
    assert p.list("GroupId") == []
    assert _code(p.list, "GroupId", required=True) == (
        "MissingParameter", "The request must contain the parameter GroupId.1")
    assert p.has("InstanceId") and not p.has("GroupId")


def test_struct_list_nested() -> None:
    p = Params({
        "TagSpecification.2.ResourceType": "volume",
        "TagSpecification.2.Tag.1.Key": "k",
        "TagSpecification.2.Tag.1.Value": "v",
        "TagSpecification.1.ResourceType": "instance",
        "TagSpecification.1.Tag.11.Key": "eleven",
        "TagSpecification.1.Tag.11.Value": "",
        "TagSpecification.1.Tag.2.Key": "Name",
        "TagSpecification.1.Tag.2.Value": "web",
    })
    assert p.struct_list("TagSpecification") == [
        {"ResourceType": "instance", "Tag": [{"Key": "Name", "Value": "web"},
                                             {"Key": "eleven", "Value": ""}]},
        {"ResourceType": "volume", "Tag": [{"Key": "k", "Value": "v"}]},
    ]
    assert p.struct_list("BlockDeviceMapping") == []


def test_struct_and_conflicts() -> None:
    p = Params({"Placement.AvailabilityZone": "lxcloud-1a", "Placement.Tenancy": "default"})
    assert p.struct("Placement") == {"AvailabilityZone": "lxcloud-1a", "Tenancy": "default"}
    assert p.struct("Monitoring") == {}
    bad = Params({"Tag.1": "x", "Tag.1.Key": "k"})
    assert _code(bad.struct_list, "Tag")[0] == "InvalidParameterValue"
    assert _code(Params({"TagSpecification.a.ResourceType": "x"}).struct_list,
                 "TagSpecification")[0] == "InvalidParameterValue"


def test_filters() -> None:
    p = Params({
        "Filter.1.Name": "instance-state-name", "Filter.1.Value.1": "running",
        "Filter.1.Value.2": "stopped",
        "Filter.2.Name": "tag:Name", "Filter.2.Value.1": "web",
        "Filter.3.Name": "instance-state-name", "Filter.3.Value.1": "pending",
        "Filter.4.Name": "tag-key",
    })
    assert p.filters() == {"instance-state-name": ["running", "stopped", "pending"],
                           "tag:Name": ["web"], "tag-key": []}
    assert Params({}).filters() == {}
    assert _code(Params({"Filter.1.Value.1": "x"}).filters) == (
        "MissingParameter", "The request must contain the parameter Filter.1.Name")


# --- pagination ------------------------------------------------------------------------------

ITEMS = [f"i-{n:017x}" for n in range(23)]
SECRET = b"s" * 32


def test_paginate_all_pages() -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page, token = pagination.paginate(ITEMS, 10, token, key="DescribeInstances|q1", secret=SECRET)
        seen += page
        pages += 1
        if token is None:
            break
    assert seen == ITEMS and pages == 3


def test_paginate_without_max_results_returns_everything() -> None:
    assert pagination.paginate(ITEMS, None, None, key="k", secret=SECRET) == (ITEMS, None)
    assert pagination.paginate(ITEMS[:5], 5, None, key="k", secret=SECRET) == (ITEMS[:5], None)


def test_token_from_another_query_is_refused() -> None:
    _, token = pagination.paginate(ITEMS, 5, None, key="DescribeInstances|q1", secret=SECRET)
    assert token is not None
    assert _code(pagination.paginate, ITEMS, 5, token, key="DescribeInstances|q2", secret=SECRET)[0] == \
        "InvalidParameterValue"


@pytest.mark.parametrize("token", ["garbage", "", "bm90LWEtdG9rZW4", "MTA6", "LTU6YWJj", "ü"])
def test_bad_tokens(token: str) -> None:
    if token == "":
        # empty = first page
        assert pagination.paginate(ITEMS, 5, token, key="k", secret=SECRET)[0] == ITEMS[:5]
        return
    assert _code(pagination.paginate, ITEMS, 5, token, key="k", secret=SECRET)[0] == "InvalidParameterValue"


def test_tampered_offset_is_refused() -> None:
    _, token = pagination.paginate(ITEMS, 5, None, key="k", secret=SECRET)
    assert token is not None
    offset_part = pagination.make_token(5, "k", SECRET)
    assert offset_part == token
    forged = pagination.make_token(10, "other", SECRET)
    assert _code(pagination.read_token, forged, "k", SECRET)[0] == "InvalidParameterValue"


@pytest.mark.parametrize("max_results", [0, 4, 1001, -1])
def test_max_results_bounds(max_results: int) -> None:
    code, message = _code(pagination.paginate, ITEMS, max_results, None, key="k", secret=SECRET)
    assert code == "InvalidParameterValue" and str(max_results) in message


def test_max_results_bounds_inclusive() -> None:
    assert len(pagination.paginate(ITEMS, 5, None, key="k", secret=SECRET)[0]) == 5
    assert len(pagination.paginate(ITEMS, 1000, None, key="k", secret=SECRET)[0]) == len(ITEMS)


def test_token_is_bound_to_the_secret() -> None:
    """A token signed with one cloud's secret means nothing to another cloud."""
    token = pagination.make_token(5, "k", SECRET)
    assert pagination.read_token(token, "k", SECRET) == 5
    assert _code(pagination.read_token, token, "k", b"t" * 32)[0] == "InvalidParameterValue"
