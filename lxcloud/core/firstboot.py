"""What an instance gets written into its new root before its first boot: keys and user data.

The services put `firstboot_files(...)` in the InstanceSpec's first_boot. The images do the rest:
the busybox image's rcS and the Debian image's `lxcloud-user-data.service` run the user data once
when it starts with `#!` (marker USER_DATA_DONE, output on the console, hence in the console log);
images with cloud-init ignore the file and take the user data from the metadata service instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxcloud.core.errors import InvalidInput
from lxcloud.core.instance import File

AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
USER_DATA = "/var/lib/lxcloud/user-data"
USER_DATA_DONE = "/var/lib/lxcloud/user-data.done"


def authorized_keys(public_keys: Sequence[str]) -> bytes:
    """The authorized_keys content for `public_keys` (one OpenSSH key per line)."""
    lines = []
    for key in public_keys:
        key = key.strip()
        if not key:
            continue
        if "\n" in key or "\r" in key or "\0" in key:
            # one key must stay one line: a newline would smuggle in a second entry with options
            raise InvalidInput("a public key must be a single line")
        lines.append(key)
    return "".join(f"{k}\n" for k in lines).encode()


def firstboot_files(user_data: bytes | None, public_keys: Sequence[str]) -> tuple[File, ...]:
    """Files for the new root. Empty inputs write nothing.

    /root/.ssh/authorized_keys (0600; the driver makes a missing /root/.ssh 0700, owned by the
    mapped root) and /var/lib/lxcloud/user-data (0600). Raises InvalidInput for a multi-line key.
    Size limits on user data (EC2: 16 KiB) belong to the API layer, checked before anything is made.
    """
    files: list[File] = []
    keys = authorized_keys(public_keys)
    if keys:
        files.append(File(AUTHORIZED_KEYS, keys, 0o600))
    if user_data:
        files.append(File(USER_DATA, bytes(user_data), 0o600))
    return tuple(files)
