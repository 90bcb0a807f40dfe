"""CLI: lxcloud project create|list, lxcloud user create|list|credentials."""

from __future__ import annotations

import typer
from rich.table import Table

from lxcloud.cli.awsprofile import config_section, write_profile
from lxcloud.cli.common import JSON, api_errors, g, new_app, out, print_json

project_app = new_app(help="Projects (tenants).")
user_app = new_app(help="Users, their API tokens and EC2 credentials.")


@project_app.command("create")
@api_errors
def project_create(ctx: typer.Context, name: str,
                   as_json: bool = JSON) -> None:
    """Create a project."""
    p = g(ctx).client().post("/api/v1/projects", json={"name": name})
    print_json(p) if as_json else out.print(f"created project {p['name']} ({p['id']})")


@project_app.command("list")
@api_errors
def project_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """List projects."""
    items = g(ctx).client().get("/api/v1/projects")
    if as_json:
        print_json(items)
        return
    t = Table("NAME", "ID", "CREATED")
    for p in items:
        t.add_row(p["name"], p["id"], str(p["created"])[:19])
    out.print(t)


@user_app.command("create")
@api_errors
def user_create(ctx: typer.Context, name: str,
                project: str = typer.Option(..., "--project", "-p", help="its project"),
                role: str = typer.Option("member", "--role", help="member | admin"),
                as_json: bool = JSON) -> None:
    """Create a user in a project; prints its API token (shown once)."""
    res = g(ctx).client().post("/api/v1/users", json={"name": name, "project": project, "role": role})
    if as_json:
        print_json(res)
        return
    out.print(f"created user {res['user']['name']} in project {res['user']['project']}\n"
              f"API token (shown once): {res['token']}", highlight=False)


@user_app.command("list")
@api_errors
def user_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """List users."""
    items = g(ctx).client().get("/api/v1/users")
    if as_json:
        print_json(items)
        return
    t = Table("NAME", "ID", "PROJECT", "ROLE")
    for u in items:
        t.add_row(u["name"], u["id"], u["project"], u["role"])
    out.print(t)


@user_app.command("credentials")
@api_errors
def user_credentials(ctx: typer.Context, name: str,
                     write_aws_profile: bool = typer.Option(
                         False, "--write-aws-profile",
                         help="save them as aws profile NAME (~/.aws/credentials and ~/.aws/config, "
                              "or $AWS_SHARED_CREDENTIALS_FILE and $AWS_CONFIG_FILE), endpoint "
                              "included, and print where instead of the secret"),
                     as_json: bool = JSON) -> None:
    """The user's EC2 access key id and secret (also as an aws CLI profile)."""
    cred = g(ctx).client().get(f"/api/v1/users/{name}/credentials")
    if write_aws_profile:
        w = write_profile(name, cred["access_key_id"], cred["secret_access_key"], cred["region"],
                          cred["endpoint_url"])
        if as_json:
            print_json({"profile": w.profile, "credentials_file": str(w.credentials_file),
                        "config_file": str(w.config_file), "access_key_id": cred["access_key_id"],
                        "region": cred["region"], "endpoint_url": cred["endpoint_url"]})
            return
        out.print(f"wrote aws profile {w.profile}:\n"
                  f"  {w.credentials_file} (mode 0600): [{w.profile}] aws_access_key_id = "
                  f"{cred['access_key_id']}, aws_secret_access_key\n"
                  f"  {w.config_file}: [{config_section(w.profile)}] region = {cred['region']}, "
                  f"endpoint_url = {cred['endpoint_url']}\n"
                  f"try: aws --profile {w.profile} ec2 describe-instances", highlight=False)
        return
    if as_json:
        print_json(cred)
        return
    out.print(f"access_key_id:     {cred['access_key_id']}\n"
              f"secret_access_key: {cred['secret_access_key']}\n"
              f"region:            {cred['region']}\n"
              f"endpoint_url:      {cred['endpoint_url']}\n\n"
              f"# ~/.aws/credentials\n[{name}]\naws_access_key_id = {cred['access_key_id']}\n"
              f"aws_secret_access_key = {cred['secret_access_key']}\n\n"
              f"# ~/.aws/config\n[{config_section(name)}]\nregion = {cred['region']}\n"
              f"endpoint_url = {cred['endpoint_url']}\n"
              f"# (lxcloud user credentials {name} --write-aws-profile saves them so)\n"
              f"# aws --profile {name} ec2 describe-instances",
              highlight=False, markup=False)

