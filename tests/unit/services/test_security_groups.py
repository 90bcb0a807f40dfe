"""The security-group service's rule spelling (one per rule, so duplicates are found) and what it
refuses before anything is written."""

from __future__ import annotations

import pytest

from lxcloud.core.errors import InvalidInput
from lxcloud.services.security_groups import RuleSpec, describe, normalize


@pytest.mark.parametrize(("given", "expected"), [
    (RuleSpec("ingress", "TCP"), RuleSpec("ingress", "tcp", 0, 65535, cidr="0.0.0.0/0")),
    (RuleSpec("ingress", "tcp", 22), RuleSpec("ingress", "tcp", 22, 22, cidr="0.0.0.0/0")),
    (RuleSpec("egress", "all", 1, 2, cidr="10.1.2.3/8"), RuleSpec("egress", "all", cidr="10.0.0.0/8")),
    (RuleSpec("ingress", "icmp"), RuleSpec("ingress", "icmp", -1, -1, cidr="0.0.0.0/0")),
    (RuleSpec("ingress", "icmp", -1, 3), RuleSpec("ingress", "icmp", -1, -1, cidr="0.0.0.0/0")),
    (RuleSpec("ingress", "icmp", 8, None, source_group="web"),
     RuleSpec("ingress", "icmp", 8, -1, source_group="web")),
])
def test_one_spelling_per_rule(given: RuleSpec, expected: RuleSpec) -> None:
    assert normalize(given) == expected


@pytest.mark.parametrize("bad", [
    RuleSpec("inbound"), RuleSpec("ingress", "gre"), RuleSpec("ingress", "tcp", 9, 1),
    RuleSpec("ingress", "udp", 1, 65536), RuleSpec("ingress", cidr="10.0.0.0/40"),
    RuleSpec("ingress", cidr="::/0"), RuleSpec("ingress", cidr="10.0.0.0/8", source_group="g"),
    RuleSpec("ingress", "icmp", 256),
])
def test_what_nftables_could_not_express_is_refused(bad: RuleSpec) -> None:
    with pytest.raises(InvalidInput):
        normalize(bad)


def test_rules_in_words() -> None:
    assert describe(normalize(RuleSpec("ingress", "tcp", 22))) == "ingress tcp 22 from 0.0.0.0/0"
    assert describe(normalize(RuleSpec("egress", "udp", 1000, 2000, cidr="10.0.0.0/8"))) == \
        "egress udp 1000-2000 to 10.0.0.0/8"
    assert describe(normalize(RuleSpec("ingress", "icmp", 8, 0, source_group="sg-1"))) == \
        "ingress icmp type 8 code 0 from group sg-1"
