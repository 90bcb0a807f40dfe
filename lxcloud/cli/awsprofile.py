"""The aws CLI's profile files, written as `aws configure` writes them, for `lxcloud user
credentials NAME --write-aws-profile`: the key in the shared credentials file, the region and the
cloud's EC2 endpoint in the config file, so `aws --profile NAME ec2 …` needs no other option."""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Written:
    profile: str
    credentials_file: Path
    config_file: Path


class _Ini(configparser.RawConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr   # keys kept as written (configparser would lower-case them)


def aws_files() -> tuple[Path, Path]:
    """(credentials, config) where the aws CLI and boto3 look: AWS_SHARED_CREDENTIALS_FILE and
    AWS_CONFIG_FILE, else ~/.aws/credentials and ~/.aws/config."""
    creds = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    config = os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    return Path(creds).expanduser(), Path(config).expanduser()


def _update(path: Path, section: str, values: dict[str, str], mode: int | None = None) -> None:
    """Sets `values` in `section` of the INI file `path`, every other section and key kept;
    written whole to a temp file and renamed, so a reader never sees half a file. The file gets
    `mode`; without one it keeps its own, and a new one is 0600 (as `aws configure` makes it)."""
    ini = _Ini(interpolation=None)
    if path.exists():
        ini.read(path)
        mode = path.stat().st_mode & 0o777 if mode is None else mode
    mode = 0o600 if mode is None else mode
    if not ini.has_section(section):
        ini.add_section(section)
    for key, value in values.items():
        ini.set(section, key, value)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            ini.write(f)
        os.chmod(tmp, mode)   # whatever the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def config_section(profile: str) -> str:
    """The config file's section of `profile`: "profile NAME", but "default" for the default."""
    return profile if profile == "default" else f"profile {profile}"


def write_profile(profile: str, access_key_id: str, secret_access_key: str, region: str,
                  endpoint_url: str) -> Written:
    """Profile `profile` in both files: `[profile]` in credentials (mode 0600, the secret), and
    `[profile NAME]` (`[default]` for "default") in config with region and endpoint_url, which
    botocore ≥ 1.31 and so the aws CLI and boto3 take as the endpoint of every call."""
    creds, config = aws_files()
    _update(creds, profile, {"aws_access_key_id": access_key_id,
                             "aws_secret_access_key": secret_access_key}, 0o600)
    _update(config, config_section(profile),
            {"region": region, "endpoint_url": endpoint_url})
    return Written(profile, creds, config)
