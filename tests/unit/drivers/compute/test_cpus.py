"""Whole CPUs for an instance's vCPUs: stable per instance, spread over the host's."""

from __future__ import annotations

from collections import Counter

from lxcloud.drivers.compute.lxc import pick_cpus


def test_vcpus_round_up_to_whole_cpus_and_all_means_no_pinning() -> None:
    assert pick_cpus("i-1", 0.5, [0, 1, 2, 3]) is not None
    assert len(pick_cpus("i-1", 0.5, [0, 1, 2, 3]) or []) == 1
    assert len(pick_cpus("i-1", 2.5, [0, 1, 2, 3]) or []) == 3
    assert pick_cpus("i-1", 4, [0, 1, 2, 3]) is None
    assert pick_cpus("i-1", 8, [0, 1]) is None
    assert set(pick_cpus("i-1", 2, [4, 5, 6]) or []) <= {4, 5, 6}


def test_the_same_instance_gets_the_same_cpus_and_instances_spread() -> None:
    assert pick_cpus("i-abc", 1, [0, 1, 2, 3]) == pick_cpus("i-abc", 1, [0, 1, 2, 3])
    use = Counter(c for i in range(4000) for c in pick_cpus(f"i-{i:017x}", 1, [0, 1, 2, 3]) or [])
    assert set(use) == {0, 1, 2, 3} and max(use.values()) < 1.15 * min(use.values())
