"""Security groups on the whole stack with real containers and real packets (wget to busybox httpd,
ping, from inside the containers): allow and deny in both directions, by CIDR and by group, a rule
change and a change of an instance's groups applied at once to running instances, the host's
rules rebuilt by a controller restart, and nothing of them left behind."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from lxcloud.core.caller import Caller
from lxcloud.core.errors import Conflict, NotFound
from lxcloud.drivers.network.secgroups import SecurityGroups
from lxcloud.services.cloud import Cloud
from lxcloud.services.instances import LaunchRequest
from lxcloud.services.security_groups import RuleSpec
from tests.integration.services.stack import Stack, ok, running_stack, sh, wait
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("lxcloud-sg-") as st:
        yield st
    table = st.settings.nft_table
    assert subprocess.run(["nft", "list", "table", "inet", table], capture_output=True
                          ).returncode != 0, "the cloud's table outlived its removal"


def launch(cloud: Cloud, name: str, *groups: str) -> str:
    [(inst, op)] = cloud.instances.launch(LaunchRequest(image="busybox", name=name,
                                                        memory="64MiB", security_groups=groups))
    assert op is not None
    wait(cloud, op.id, 180)
    return inst.id


def owner(cloud: Cloud, name: str) -> Caller:
    pid = cloud.instances.get(name).project_id or ""
    return Caller(user_id="system", user="system", project_id=pid, project="")


def web_ok(cloud: Cloud, src: str, dst: str) -> bool:
    ip = cloud.instances.get(dst).ipv4
    # (busybox 1.35's wget segfaults with -T: timeout(1) bounds it)
    code, out = sh(cloud, src, f"timeout 3 wget -qO- http://{ip}:8080/ 2>&1")
    return code == 0 and "hello" in out


def ping(cloud: Cloud, src: str, dst: str) -> bool:
    ip = cloud.instances.get(dst).ipv4
    return sh(cloud, src, f"ping -c1 -W1 {ip}")[0] == 0


def test_groups_allow_and_deny_with_real_traffic(stack: Stack) -> None:
    c = stack.cloud
    launch(c, "sgclient")                       # the project's default group
    me = owner(c, "sgclient")
    c.security_groups.create("sgweb", me, "web servers")
    c.security_groups.create("sgother", me)
    c.security_groups.add_rules("sgweb", [RuleSpec("ingress", "tcp", 8080, 8080,
                                                   source_group="default")], me)
    launch(c, "sgweb", "sgweb")
    launch(c, "sgother", "sgother")
    assert [g.name for g in c.security_groups.list(me, names=["default"])] == ["default"]
    assert c.security_groups.names_of(c.instances.get("sgweb").id) == ["sgweb"]
    ok(c, "sgweb", "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && "
                   "httpd -p 8080 -h /tmp/www")
    # ingress by group: a member of default gets in, a member of sgother does not
    wait_for(lambda: web_ok(c, "sgclient", "sgweb"), 10, "the client to reach the web server")
    assert not web_ok(c, "sgother", "sgweb")
    # no ICMP rule yet; one added reaches the running instance at once
    assert not ping(c, "sgclient", "sgweb")
    c.security_groups.add_rules("sgweb", [RuleSpec("ingress", "icmp", 8, -1,
                                                   cidr="0.0.0.0/0")], me)
    assert ping(c, "sgclient", "sgweb") and ping(c, "sgother", "sgweb")
    with pytest.raises(Conflict):
        c.security_groups.add_rules("sgweb", [RuleSpec("ingress", "icmp", 8, None)], me)
    # default's ingress is from its members only: sgweb can't reach the client ...
    assert not ping(c, "sgweb", "sgclient")
    # ... until sgweb is also in default
    c.security_groups.set_instance_groups("sgweb", ["sgweb", "default"], me)
    assert ping(c, "sgweb", "sgclient")
    assert not ping(c, "sgother", "sgclient")
    # egress: sgother may send anything; without its egress rule it may send nothing
    c.security_groups.add_rules("sgweb", [RuleSpec("ingress", "tcp", 8080, 8080,
                                                   cidr=f"{c.instances.get('sgother').ipv4}/32")],
                                me)
    assert web_ok(c, "sgother", "sgweb")
    c.security_groups.remove_rules("sgother", [RuleSpec("egress")], me)
    assert not web_ok(c, "sgother", "sgweb") and not ping(c, "sgother", "sgweb")
    with pytest.raises(NotFound):
        c.security_groups.remove_rules("sgother", [RuleSpec("egress")], me)
    with pytest.raises(Conflict, match="sgother"):
        c.security_groups.delete("sgother", me)

    # the host loses every rule; a controller restart makes them again from the database
    SecurityGroups().remove_all(stack.settings.nft_table)
    c = stack.restart_controller()
    assert web_ok(c, "sgclient", "sgweb")
    assert not web_ok(c, "sgother", "sgweb")
    assert not ping(c, "sgweb", "sgother")

    # a stopped and started instance is filtered as before
    wait(c, c.instances.action("sgother", "stop", force=True).id, 60)
    wait(c, c.instances.action("sgother", "start").id, 60)
    assert not web_ok(c, "sgother", "sgweb")

    # terminating an instance takes its port's rules away
    table = stack.settings.nft_table
    other = c.instances.get("sgother").id
    port = stack.node._driver_of(other).port_name(other, 0)

    def in_map() -> bool:
        listed = subprocess.run(["nft", "-j", "list", "map", "inet", table, "sg_out"],
                                capture_output=True, text=True, check=True).stdout
        return port in json.dumps(json.loads(listed))

    assert in_map()
    wait(c, c.instances.delete(other, force=True).id, 60)
    assert not in_map()
    c.security_groups.delete("sgother", me)
