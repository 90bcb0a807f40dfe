"""The metadata service as instances see it: real containers on a real bridge, the app served by uvicorn
on the bridge's gateway, nftables DNAT from 169.254.169.254:80. busybox for IMDSv1, Debian (bash's
/dev/tcp: the image has neither curl nor wget) for IMDSv2's PUT, and optionally cloud-init's own Ec2
datasource consuming it all."""

from __future__ import annotations

import secrets
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.api.metadata.app import MetadataView, create_metadata_app
from lxcloud.core.firstboot import firstboot_files
from lxcloud.drivers.compute.lxc import LxcDriver
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.drivers.network.firewall import Firewall
from lxcloud.drivers.storage.dir import DirPool
from tests.integration.conftest import Box, BridgeNet, Launcher, unique, wait_for
from tests.integration.conftest import debian_launcher as _debian_launcher

pytestmark = pytest.mark.root

DEBIAN_CACHE = Path("/var/cache/lxcloud-test")
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq8sB0Dx3Y5oVZc0mXl2y0vGk0m6rH7R3gkZr5m0ZQm "
       "alice@example")


class Served:
    """The metadata app on uvicorn, in a thread, bound to host:<free port>; views keyed by address."""

    def __init__(self, host: str) -> None:
        import uvicorn

        self.views: dict[str, MetadataView] = {}
        app = create_metadata_app(self.views.get, secrets.token_bytes(32))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "uvicorn to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def add(self, spec: Box, **kw: object) -> MetadataView:
        nic = spec.nics[0]
        ip = nic.ipv4 or ""
        fields: dict[str, object] = dict(
            instance_id="i-" + secrets.token_hex(8) + "a", hostname=spec.hostname, local_ipv4=ip,
            mac=nic.mac or "", instance_type="t3.micro", ami_id="ami-" + secrets.token_hex(8) + "b",
            availability_zone="lxcloud-1a", region="lxcloud-1", reservation_id="r-" + secrets.token_hex(8),
            security_groups=["default"], account_id="000000000001")
        fields.update(kw)
        view = MetadataView(**fields)  # type: ignore[arg-type]
        self.views[ip] = view
        return view


@pytest.fixture
def imds(bridge: BridgeNet) -> Iterator[Served]:
    """The app on the bridge's gateway and the network's DNAT rule, in a table of this test's own."""
    served = Served(bridge.gateway)
    spec = NetworkSpec(name="md", bridge=bridge.name, cidr=str(bridge.network), gateway=bridge.gateway,
                       nat=False, nft_table=unique("lxtmd_"), metadata_port=served.port)
    fw = Firewall()
    try:
        fw.apply(spec)
        yield served
    finally:
        fw.remove_table(spec.nft_table)
        served.stop()


def sh(d: LxcDriver, name: str, script: str, argv0: str = "sh", timeout: float = 15) -> tuple[int, str]:
    r = d.exec(name, [argv0, "-c", script], timeout=timeout)
    return r.exit_code, r.stdout.decode() + r.stderr.decode()


def test_each_instance_reads_its_own_metadata(launch: Launcher, imds: Served) -> None:
    a = launch(memory=64 << 20)
    b = launch(memory=64 << 20)
    va = imds.add(a, public_keys={"alice": KEY}, user_data=b"#!/bin/sh\necho hi\n")
    vb = imds.add(b)
    d = launch.driver
    url = "http://169.254.169.254/latest"

    def fetch(name: str, path: str) -> str:
        # (busybox 1.35's wget segfaults with -T: time it out with timeout(1))
        code, out = sh(d, name, f"timeout 5 wget -qO- {url}/{path}")
        return out if code == 0 else f"<failed {code}: {out}>"

    assert wait_for(lambda: fetch(a.name, "meta-data/instance-id") == va.instance_id, 15,
                    "a's instance id through 169.254.169.254")
    assert fetch(b.name, "meta-data/instance-id") == vb.instance_id
    assert fetch(a.name, "meta-data/local-ipv4") == va.local_ipv4
    assert fetch(a.name, "meta-data/hostname") == a.hostname
    assert fetch(a.name, "meta-data/placement/availability-zone") == "lxcloud-1a"
    assert fetch(a.name, "meta-data/public-keys/") == "0=alice"
    assert fetch(a.name, "meta-data/public-keys/0/openssh-key") == KEY
    assert fetch(a.name, "user-data") == "#!/bin/sh\necho hi\n"
    assert fetch(b.name, "user-data").startswith("<failed")   # b has none: 404
    assert "instance-id" in fetch(b.name, "meta-data/").split("\n")
    # an address the service does not know (a's neighbour after a's removal) gets nothing
    del imds.views[va.local_ipv4]
    assert fetch(a.name, "meta-data/instance-id").startswith("<failed")


def _debian_template() -> Path | None:
    found = sorted(DEBIAN_CACHE.glob("debian-bookworm-amd64-base-*.tar.zst"),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


# A raw HTTP/1.0 request over bash's /dev/tcp: prints the status line, a blank line, then the body.
BASH_HTTP = r"""
req() {  # METHOD PATH [HEADER]
  exec 3<>/dev/tcp/169.254.169.254/80 || return 1
  printf '%s %s HTTP/1.0\r\nHost: 169.254.169.254\r\n%s\r\n' "$1" "$2" "${3:+$3$'\r\n'}" >&3
  local resp; resp=$(cat <&3); exec 3>&-
  printf '%s\n\n%s' "${resp%%$'\r'*}" "${resp#*$'\r\n\r\n'}"
}
"""


def _http(d: LxcDriver, name: str, method: str, path: str, header: str = "") -> tuple[int, str]:
    code, out = sh(d, name, BASH_HTTP + f"req {method} {path} '{header}'", argv0="bash")
    if code != 0 or "\n\n" not in out:
        return -1, out
    status, body = out.split("\n\n", 1)
    return int(status.split()[1]), body


@pytest.mark.skipif(_debian_template() is None,
                    reason="no cached Debian image (images/builders/test_debian builds it)")
def test_imdsv2_tokens_from_inside_debian(lxc_driver: LxcDriver, dir_pool: DirPool, bridge: BridgeNet,
                                          imds: Served, request: pytest.FixtureRequest) -> None:
    tar = _debian_template()
    assert tar is not None
    deb = _debian_launcher(lxc_driver, dir_pool, bridge, tar, request)
    spec = deb(memory=256 << 20)
    view = imds.add(spec)
    d = lxc_driver
    wait_for(lambda: _http(d, spec.name, "GET", "/latest/meta-data/instance-id")[0] == 200, 20,
             "IMDSv1 from the Debian instance")
    status, token = _http(d, spec.name, "PUT", "/latest/api/token",
                          "X-aws-ec2-metadata-token-ttl-seconds: 300")
    assert status == 200 and token, token
    assert _http(d, spec.name, "GET", "/latest/meta-data/instance-id",
                 f"X-aws-ec2-metadata-token: {token}") == (200, view.instance_id)
    assert _http(d, spec.name, "GET", "/latest/meta-data/instance-id",
                 "X-aws-ec2-metadata-token: not-a-token")[0] == 401
    assert _http(d, spec.name, "PUT", "/latest/api/token",
                 "X-aws-ec2-metadata-token-ttl-seconds: 0")[0] == 400
    assert _http(d, spec.name, "PUT", "/latest/api/token", "X-Forwarded-For: 10.0.0.1")[0] == 403


def _debian_build(variant: str) -> Path:
    """The Debian image of the current builder (built once and cached by images/builders/test_debian)."""
    from tests.integration.images.builders.test_debian import _build

    return _build("bookworm", "amd64", variant == "cloud").path


debootstrap = pytest.mark.skipif(not shutil.which("debootstrap"), reason="debootstrap missing")


def _wait_console(d: LxcDriver, name: str, needle: bytes, timeout: float) -> bytes:
    return wait_for(lambda: needle in d.console_log(name) and d.console_log(name), timeout,
                    f"{needle!r} in the console log")


@debootstrap
def test_debian_runs_script_user_data_once(lxc_driver: LxcDriver, dir_pool: DirPool, bridge: BridgeNet,
                                           request: pytest.FixtureRequest) -> None:
    deb = _debian_launcher(lxc_driver, dir_pool, bridge, _debian_build("base"), request)
    script = b"#!/bin/sh\necho hello-$((6*7))\necho ran >> /var/lib/lxcloud/runs\n"
    spec = deb(memory=256 << 20, extra_files=firstboot_files(script, [KEY]))
    d = lxc_driver
    _wait_console(d, spec.name, b"hello-42", 90)
    assert sh(d, spec.name, "cat /var/lib/lxcloud/runs") == (0, "ran\n")
    assert sh(d, spec.name, "stat -c '%a %U' /root/.ssh /root/.ssh/authorized_keys") == (
        0, "700 root\n600 root\n")
    d.stop(spec.name, timeout=60)
    d.start(spec.name)

    def unit_skipped() -> bool:
        code, out = sh(d, spec.name, "systemctl show -p ConditionResult,ActiveState "
                                     "lxcloud-user-data.service")
        return code == 0 and "ConditionResult=no" in out

    wait_for(unit_skipped, 90, "the user-data unit's condition to be checked on the second boot")
    assert sh(d, spec.name, "cat /var/lib/lxcloud/runs") == (0, "ran\n")


@debootstrap
def test_cloud_init_consumes_the_metadata_service(lxc_driver: LxcDriver, dir_pool: DirPool,
                                                  bridge: BridgeNet, imds: Served,
                                                  request: pytest.FixtureRequest) -> None:
    deb = _debian_launcher(lxc_driver, dir_pool, bridge, _debian_build("cloud"), request)
    user_data = b"#cloud-config\nruncmd:\n - echo ci-ok > /root/ci-ok\n"
    # the launcher writes the user data file too; cloud-init images must ignore it (the unit's
    # condition) and take the user data from the metadata service
    spec = deb(memory=512 << 20,
               extra_files=firstboot_files(b"#!/bin/sh\necho unit-ran\n", []))
    view = imds.add(spec, user_data=user_data, public_keys={"alice": KEY})
    d = lxc_driver

    def ci_done() -> str:
        code, out = sh(d, spec.name, "cat /root/ci-ok 2>/dev/null; cloud-init status 2>/dev/null")
        return out if "ci-ok" in out and "done" in out else ""

    try:
        wait_for(ci_done, 180, "cloud-init to run the user data from the metadata service")
    except BaseException:
        _, diag = sh(d, spec.name, "cloud-init status --long; systemctl --failed --no-pager; "
                                   "cat /run/cloud-init/ds-identify.log; tail -n 60 /var/log/cloud-init.log")
        print(diag)
        raise
    code, ds = sh(d, spec.name, "cloud-init query ds._metadata_api_version 2>&1; "
                                "cloud-init query v1.platform; cloud-init query v1.instance_id; "
                                "cloud-init query v1.cloud_name")
    assert code == 0, ds
    lines = ds.split()
    # IMDSv1 crawl at the newest version cloud-init asks for; platform ec2. cloud_name is "unknown":
    # cloud-init names AWS from DMI (a uuid starting "ec2"), which no container has
    assert lines == ["2021-03-23", "ec2", view.instance_id, "unknown"], ds
    code, out = sh(d, spec.name, "cat /run/cloud-init/result.json")
    assert "DataSourceEc2" in out, out
    code, keys = sh(d, spec.name, "cat /home/*/.ssh/authorized_keys /root/.ssh/authorized_keys 2>&1")
    assert KEY in keys, keys
    assert b"unit-ran" not in d.console_log(spec.name)

