"""deploy.yml refuses a broken inventory or missing secrets before it touches any host, with a
message that names the problem. The inventories here list containers that do not exist: had
the playbook gone past its checks, it would have tried to reach them (and the recap would show
them unreachable, as in the positive controls)."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from support.ansible_hosts import (
    ANSIBLE_BIN,
    clean_env,
    new_secrets,
    playbook,
    stopped_before_any_host,
)

HOSTS = {
    "app": {"rtdash-preflight-app1": "10.99.0.11"},
    "pushpin": {"rtdash-preflight-push1": "10.99.0.21", "rtdash-preflight-push2": "10.99.0.22"},
    "nginx": {"rtdash-preflight-edge1": "10.99.0.31"},
}


def write_inventory(path, groups=None, all_vars=None):
    """An inventory like the test one: {group: {host: internal address or None}}."""
    groups = copy.deepcopy(HOSTS) if groups is None else groups
    children = {
        group: {
            "hosts": {
                host: ({} if address is None else {"rtdash_internal_address": address})
                for host, address in hosts.items()
            }
        }
        for group, hosts in groups.items()
    }
    inventory = {
        "all": {
            "vars": {"ansible_connection": "community.docker.docker", **(all_vars or {})},
            "children": children,
        }
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    return path


def went_past_the_checks(result) -> None:
    out = result.stdout
    assert "deploy.yml stopped" not in out, out[-2000:]
    # The next play tried to reach its (non-existent) hosts.
    assert "PLAY [Pushpin nodes]" in out and "TASK [Gathering Facts]" in out, out[-2000:]


def test_missing_secrets_are_named(tmp_path):
    result = playbook(clean_env(), inventory=write_inventory(tmp_path), check=False)
    stopped_before_any_host(
        result,
        "DJANGO_SECRET_KEY is missing",
        "PUSHPIN_SIG_KEY is missing",
        "vault_django_secret_key",
    )


def test_checks_run_with_limit_too(tmp_path):
    inventory = write_inventory(tmp_path)
    result = playbook(clean_env(), "--limit", "nginx", inventory=inventory, check=False)
    stopped_before_any_host(result, "DJANGO_SECRET_KEY is missing")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DJANGO_SECRET_KEY", "short", "DJANGO_SECRET_KEY is too short"),
        ("PUSHPIN_SIG_KEY", "changeme", "PUSHPIN_SIG_KEY is Pushpin's default"),
    ],
)
def test_weak_secrets_are_refused(tmp_path, name, value, message):
    env = clean_env(**{**new_secrets(), name: value})
    result = playbook(env, inventory=write_inventory(tmp_path), check=False)
    stopped_before_any_host(result, message)


def test_valid_inventory_and_secrets_pass_the_checks(tmp_path):
    result = playbook(clean_env(**new_secrets()), inventory=write_inventory(tmp_path), check=False)
    went_past_the_checks(result)


def groups_with(change):
    groups = copy.deepcopy(HOSTS)
    change(groups)
    return groups


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (
            groups_with(lambda g: g.update(pushpin={})),
            "the pushpin group is empty",
        ),
        (
            groups_with(lambda g: g["pushpin"].update({"rtdash-preflight-edge1": None})),
            "host rtdash-preflight-edge1 is in both nginx and pushpin",
        ),
        (
            groups_with(lambda g: g.update(pushpins={"rtdash-preflight-push3": "10.99.0.23"})),
            "host rtdash-preflight-push3 is in none of the groups app, pushpin, nginx",
        ),
        (
            groups_with(lambda g: g["pushpin"].update({"rtdash-preflight-push2": None})),
            "host rtdash-preflight-push2 has no rtdash_internal_address",
        ),
        (
            groups_with(lambda g: g["pushpin"].update({"rtdash-preflight-push2": "10.99.0"})),
            "rtdash_internal_address 10.99.0 is not an IPv4 address",
        ),
        (
            groups_with(lambda g: g["pushpin"].update({"rtdash-preflight-push2": "10.99.0.21"})),
            "have the same rtdash_internal_address 10.99.0.21",
        ),
        (
            groups_with(lambda g: g["app"].update({"rtdash-preflight-app2": "10.99.0.12"})),
            "SQLite lives on one machine, but the app group has 2 hosts",
        ),
    ],
    ids=[
        "empty-pushpin-group",
        "edge-host-also-pushpin",
        "misspelt-group",
        "no-internal-address",
        "bad-internal-address",
        "duplicate-address",
        "sqlite-on-two-app-hosts",
    ],
)
def test_inventory_mistakes_are_named(tmp_path, groups, message):
    inventory = write_inventory(tmp_path, groups)
    result = playbook(clean_env(**new_secrets()), inventory=inventory, check=False)
    stopped_before_any_host(result, message)


POSTGRES = {"engine": "postgresql", "host": "10.99.0.41", "name": "dash", "user": "dash"}


def test_postgresql_needs_its_password(tmp_path):
    groups = groups_with(lambda g: g["app"].update({"rtdash-preflight-app2": "10.99.0.12"}))
    inventory = write_inventory(tmp_path, groups, {"rtdash_database": POSTGRES})
    result = playbook(clean_env(**new_secrets()), inventory=inventory, check=False)
    stopped_before_any_host(result, "DATABASE_PASSWORD is missing")
    # With it, two app hosts on PostgreSQL pass.
    env = clean_env(**new_secrets(), DATABASE_PASSWORD="s3cret/with:special@chars")
    went_past_the_checks(playbook(env, inventory=inventory, check=False))


def vault_file(path, password_file, values: dict[str, str]) -> None:
    path.write_text(yaml.safe_dump(values))
    subprocess.run(
        [
            str(ANSIBLE_BIN / "ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(password_file),
            str(path),
        ],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    assert path.read_text().startswith("$ANSIBLE_VAULT;"), "the vault file is not encrypted"


def test_secrets_from_ansible_vault(tmp_path):
    inventory = write_inventory(tmp_path / "inventory")
    (inventory / "group_vars" / "all").mkdir(parents=True)
    password = tmp_path / "vault-password"
    password.write_text("test-vault-password\n")
    secrets = new_secrets()
    vault = inventory / "group_vars" / "all" / "vault.yml"
    args = ("--vault-password-file", str(password))

    # Only one secret in the vault, none in the environment: the other one is named.
    vault_file(vault, password, {"vault_django_secret_key": secrets["DJANGO_SECRET_KEY"]})
    result = playbook(clean_env(), *args, inventory=inventory, check=False)
    stopped_before_any_host(result, "PUSHPIN_SIG_KEY is missing")
    assert "DJANGO_SECRET_KEY is missing" not in result.stdout

    vault_file(
        vault,
        password,
        {
            "vault_django_secret_key": secrets["DJANGO_SECRET_KEY"],
            "vault_pushpin_sig_key": secrets["PUSHPIN_SIG_KEY"],
        },
    )
    went_past_the_checks(playbook(clean_env(), *args, inventory=inventory, check=False))
