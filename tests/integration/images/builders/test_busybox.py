"""Inside a real busybox container, the tools scripts expect work: every applet, and the shell
stand-ins for what busybox 1.35 lacks (nohup, pgrep/pkill, install, nice, mountpoint)."""

from __future__ import annotations

from lxcloud.drivers.compute.lxc import LxcDriver
from tests.integration.conftest import Launcher


def sh(d: LxcDriver, name: str, script: str) -> tuple[int, str, str]:
    r = d.exec(name, ["sh", "-c", script], timeout=30)
    return r.exit_code, r.stdout.decode(), r.stderr.decode()


def test_tools_scripts_expect(launch: Launcher) -> None:
    spec = launch(memory=64 << 20)
    d = launch.driver

    assert sh(d, spec.name, "nohup sh -c 'echo ok'") == (0, "ok\n", "")
    # immune to hangups: the command survives a SIGHUP sent to itself
    assert sh(d, spec.name, "nohup sh -c 'kill -HUP $$; echo survived'")[:2] == (0, "survived\n")
    assert sh(d, spec.name, "nohup sh -c 'exit 7'")[0] == 7
    assert sh(d, spec.name, "nohup no-such-command")[0] == 127

    # every applet answers from its own path (a broken link would say "not found")
    code, out, err = sh(d, spec.name, "busybox --list-full | while read -r p; do "
                                      "[ -x \"/$p\" ] || echo \"missing /$p\"; done")
    assert (code, out, err) == (0, "", "")
    nproc, *rest = sh(d, spec.name, "nproc; seq 3 | xargs; timeout 5 true && echo t")[1].split()
    assert nproc.isdigit() and rest == ["1", "2", "3", "t"]

    # a process named "waiter" that says so through a fifo once it runs under that name and its
    # child runs as sleep (until the child execs, it is a second "waiter"); its output elsewhere:
    # an exec returns once every holder of its pipes is gone
    code, out, _ = sh(d, spec.name, "mkfifo /tmp/up; printf '#!/bin/sh\\nsleep 600 &\\n"
                                    "until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done\\n"
                                    "echo >/tmp/up\\nwait\\n' "
                                    ">/tmp/waiter; chmod +x /tmp/waiter; /tmp/waiter >/dev/null 2>&1 & "
                                    "read _ </tmp/up; echo $!; pgrep -x waiter; pgrep -l waiter; "
                                    "pgrep -f '^/bin/sh /tmp/wait.r$'; pgrep -x wait || echo none=$?; "
                                    "pkill -KILL -x waiter && echo killed; wait; "
                                    "pgrep -x waiter || echo gone; pkill -x waiter || echo rc=$?")
    pid = out.split()[0]
    assert out.split()[1:] == [pid, pid, "waiter", pid, "none=1", "killed", "gone", "rc=1"], out

    code, out, err = sh(d, spec.name, "echo hi > /tmp/src && install -D -m 640 /tmp/src /tmp/a/b/f "
                                      "&& install -d -m 700 /tmp/d && stat -c '%a %n' /tmp/a/b/f "
                                      "/tmp/d && cat /tmp/a/b/f")
    assert (code, out.split(), err) == (0, ["640", "/tmp/a/b/f", "700", "/tmp/d", "hi"], "")

    assert sh(d, spec.name, "nice; nice -n 5 nice; nice -3 nice")[1].split() == ["0", "5", "3"]
    assert sh(d, spec.name, "mountpoint /proc; mountpoint -q /etc || echo $?")[:2] == (
        0, "/proc is a mountpoint\n32\n")
