"""`lxcloud user credentials NAME --write-aws-profile` writes the aws CLI's files as `aws
configure` does, and boto3 then finds key, region and endpoint from the profile alone."""

from __future__ import annotations

import stat
from pathlib import Path

import boto3
import pytest

from lxcloud.cli.awsprofile import aws_files, write_profile
from lxcloud.services.cloud import Cloud
from tests.unit.cli.conftest import Run

ENDPOINT = "http://127.0.0.1:18080/ec2/"


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION",
                "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2"):
        monkeypatch.delenv(var, raising=False)
    return aws_files()


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_new_files_under_home(files: tuple[Path, Path], tmp_path: Path) -> None:
    creds, config = files
    assert (creds, config) == (tmp_path / "home/.aws/credentials", tmp_path / "home/.aws/config")
    write_profile("bob", "AKIDBOB", "s3cret/+=", "lxcloud-1", ENDPOINT)
    assert creds.read_text() == "[bob]\naws_access_key_id = AKIDBOB\naws_secret_access_key = s3cret/+=\n\n"
    assert config.read_text() == f"[profile bob]\nregion = lxcloud-1\nendpoint_url = {ENDPOINT}\n\n"
    assert mode(creds) == mode(config) == 0o600 and mode(creds.parent) == 0o700
    ec2 = boto3.Session(profile_name="bob").client("ec2")
    assert ec2.meta.endpoint_url == ENDPOINT
    assert ec2.meta.region_name == "lxcloud-1"
    got = boto3.Session(profile_name="bob").get_credentials()
    assert got is not None and (got.access_key, got.secret_key) == ("AKIDBOB", "s3cret/+=")


def test_other_profiles_kept_and_keys_replaced(files: tuple[Path, Path]) -> None:
    creds, config = files
    creds.parent.mkdir(parents=True)
    creds.write_text("[default]\naws_access_key_id = AKIDDEF\naws_secret_access_key = d\n\n"
                     "[bob]\naws_access_key_id = OLD\naws_secret_access_key = old\n"
                     "aws_session_token = keep-me\n")
    creds.chmod(0o644)
    config.write_text("[default]\nregion = eu-west-1\noutput = json\n\n[profile bob]\nregion = old\n"
                      "cli_pager = \n")
    config.chmod(0o640)
    write_profile("bob", "AKIDBOB", "new", "lxcloud-1", ENDPOINT)
    write_profile("bob", "AKIDBOB", "newer", "lxcloud-1", ENDPOINT)   # again: still one of each
    text = creds.read_text()
    assert text.count("[bob]") == 1 and "aws_secret_access_key = newer" in text
    assert "AKIDDEF" in text and "aws_session_token = keep-me" in text and "OLD" not in text
    assert mode(creds) == 0o600                                  # the secret: 0600 whatever it was
    cfg = config.read_text()
    assert "[default]\nregion = eu-west-1\noutput = json" in cfg and "cli_pager = " in cfg
    assert cfg.count("[profile bob]") == 1 and f"endpoint_url = {ENDPOINT}" in cfg
    assert mode(config) == 0o640                                 # the config keeps its mode
    assert not list(creds.parent.glob(".*.tmp"))


def test_environment_names_the_files_and_default_is_default(
        files: tuple[Path, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "elsewhere/creds"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "elsewhere/conf"))
    w = write_profile("default", "AKID", "s", "lxcloud-1", ENDPOINT)
    assert w.credentials_file == tmp_path / "elsewhere/creds"
    assert w.config_file == tmp_path / "elsewhere/conf"
    assert not files[0].exists() and not files[1].exists()
    assert w.config_file.read_text().startswith("[default]\nregion = lxcloud-1\n")
    assert boto3.Session().client("ec2").meta.region_name == "lxcloud-1"


def test_cli_writes_the_profile_and_prints_no_secret(run: Run, cloud: Cloud,
                                                     files: tuple[Path, Path]) -> None:
    creds, config = files
    key = cloud.accounts.credentials("admin")
    res = run("user", "credentials", "admin", "--write-aws-profile")
    assert res.exit_code == 0, res.output
    assert key.secret_access_key not in res.output
    assert str(creds) in res.output and str(config) in res.output and key.access_key_id in res.output
    assert f"aws_secret_access_key = {key.secret_access_key}" in creds.read_text()
    assert "[profile admin]" in config.read_text() and "endpoint_url = http" in config.read_text()
    plain = run("user", "credentials", "admin")        # without the flag: shown, nothing written
    assert key.secret_access_key in plain.output and "--write-aws-profile" in plain.output
