"""README's storage section, run as written: its ```sh block with bash, as a new user would (a
fresh HOME, the venv's bin on PATH), against a real `lxcloud up`; it cleans up after itself."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.conftest import Cloud, run_readme
from tests.e2e.test_readme_walkthrough import blocks

SECTION = "### Storage"


def test_storage_section_runs_as_written(cloud: Cloud, home: Path) -> None:
    (script,) = blocks("sh", SECTION)
    for step in ("pool create fast", "--disk 256MiB", "resize web --disk", "volume attach data web",
                 "volume detach data", "volume snapshot create", "--from-snapshot",
                 "snapshot restore web before", "copy web web2", "image create-from web",
                 "export web web.tar", "import web.tar", "pool delete fast"):
        assert step in script, step
    code = "\n".join(line.split("#", 1)[0] for line in script.splitlines())
    assert not re.search(r"127\.0\.0\.1|:8080|localhost", code)

    sh = run_readme(script, cloud, home, timeout=900)
    said = f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"
    assert sh.returncode == 0, said

    # df inside showed the limit; writing past it failed there
    assert re.search(r"\s2[45]\d(\.\d)?M\s+\S+\s+\S+\s+\d+%\s+/$", sh.stdout, re.M), said
    assert "No space left on device" in sh.stderr or "Disk quota exceeded" in sh.stderr, said
    # the detach refused naming the process that held the volume
    assert re.search(r"^error: .*sleep", sh.stderr, re.M), said
    # the older snapshot restored; the volume copy holds the snapshot's data
    lines = sh.stdout.splitlines()
    assert "one" in lines and "two" not in lines and "hello" in lines, said
    assert "downloading web.tar: 100%" in sh.stderr and "uploading web.tar: 100%" in sh.stderr
    assert "imported web-restored (" in sh.stdout, said

    # it cleaned up after itself
    assert cloud.json("list") == []
    assert cloud.json("volume", "list") == []
    assert [p["name"] for p in cloud.json("pool", "list")] == ["default"]  # type: ignore[union-attr,index]
    assert [i["name"] for i in cloud.json("image", "list")] == ["busybox"]  # type: ignore[union-attr,index]
    assert not (home / "lxcloud-demo" / "web.tar").exists()
    fast = str(cloud.data_dir / "pools" / "fast")
    assert not any(line.split()[1].startswith(fast)
                   for line in Path("/proc/mounts").read_text().splitlines())
