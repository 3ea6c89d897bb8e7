"""`make verify`'s choice of target from its variables (no Docker, no host contacted): which
target, the inventory by name or path, ANSIBLE_ARGS as the environment Ansible reads, the
inventory's groups as ansible-inventory lists them, and the usage errors make prints."""

import pytest

from support.stack import REPO, make_here
from verify.targets import (
    INVENTORIES,
    AnsibleTarget,
    ComposeTarget,
    KubernetesTarget,
    TargetError,
    ansible_options,
    parse_target,
)


def test_the_compose_project_is_the_default_target():
    target = parse_target()
    assert isinstance(target, ComposeTarget) and target.project == "rtdash", target
    assert parse_target(project="rtdash-test").project == "rtdash-test"


def test_an_inventory_or_a_namespace_wins_over_the_default_project():
    assert isinstance(parse_target(project="rtdash", inventory="test"), AnsibleTarget)
    target = parse_target(project="rtdash", namespace="rtdash")
    assert isinstance(target, KubernetesTarget) and target.namespace == "rtdash"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inventory": "test", "namespace": "rtdash"}, "not both"),
        ({"ansible_args": "--user deploy"}, "set INVENTORY too"),
        ({"origin": "dash.example.com:443"}, "ORIGIN is for INVENTORY or K8S_NAMESPACE"),
        ({"project": "Not A Project"}, "is not a compose project name"),
        ({"namespace": "Bad_Namespace"}, "is not a namespace name"),
        ({"inventory": "no-such-env"}, "no such inventory (one of: example test"),
    ],
)
def test_what_cannot_be_a_target_is_refused_with_the_reason(kwargs, message):
    with pytest.raises(TargetError) as refused:
        parse_target(**kwargs)
    assert message in str(refused.value), f"expected {message!r} in {refused.value}"


def test_an_inventory_is_an_environment_name_or_a_path():
    assert parse_target(inventory="test").inventory == INVENTORIES / "test"
    path = INVENTORIES / "example" / "hosts.yml"
    assert parse_target(inventory=str(path)).inventory == path


def test_ansible_args_become_the_environment_ansible_reads():
    env = ansible_options(
        "--vault-password-file=/run/vault-pass -u deploy --private-key ~/.ssh/k "
        "--ssh-common-args '-o ProxyJump=bastion' --become --check --diff"
    )
    assert env == {
        "ANSIBLE_VAULT_PASSWORD_FILE": "/run/vault-pass",
        "ANSIBLE_REMOTE_USER": "deploy",
        "ANSIBLE_PRIVATE_KEY_FILE": "~/.ssh/k",
        "ANSIBLE_SSH_COMMON_ARGS": "-o ProxyJump=bastion",
        "ANSIBLE_BECOME": "true",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--ask-vault-pass", "cannot prompt for the vault password"),
        ("-e x=1", "'-e' is not an option verify can pass on"),
        ("--user", "--user needs a value"),
    ],
)
def test_ansible_args_verify_cannot_honour_are_refused(args, message):
    with pytest.raises(TargetError) as refused:
        ansible_options(args)
    assert message in str(refused.value), f"expected {message!r} in {refused.value}"


def test_the_inventorys_groups_are_the_hosts_checked():
    """ansible-inventory itself reads the test inventory (no host is contacted)."""
    target = parse_target(inventory="test")
    assert target.group_hosts("pushpin") == ["rtdash-ansible-pushpin1", "rtdash-ansible-pushpin2"]
    assert target.group_hosts("app") == ["rtdash-ansible-app1"]
    assert target.hostvars("rtdash-ansible-pushpin2")["rtdash_internal_address"] == "172.31.90.22"
    # The origin: the nginx host, on nginx's port.
    assert target.origin() == ("172.31.90.31", 8080)
    assert parse_target(inventory="test", origin="dash.example.com:443").origin() == (
        "dash.example.com",
        443,
    )


def test_every_config_file_a_target_compares_is_in_the_repository():
    for cls in (ComposeTarget, AnsibleTarget, KubernetesTarget):
        missing = [c.source for c in cls.config_files if not (REPO / c.source).is_file()]
        assert not missing, f"{cls.__name__}: no such repository file {missing}"
        roles = {c.role for c in cls.config_files}
        assert roles == {"pushpin", "nginx"}, f"{cls.__name__}: config of {roles}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["INVENTORY=no-such-env"], "make verify: INVENTORY=no-such-env: no such inventory"),
        (["INVENTORY=test", "K8S_NAMESPACE=rtdash"], "set INVENTORY or K8S_NAMESPACE, not both"),
        # ANSIBLE_ARGS reaches the suite as written, quotes and all.
        (
            ["INVENTORY=test", "ANSIBLE_ARGS=--ssh-common-args '-o A=b' -u 'x y' --ask-vault-pass"],
            "verify cannot prompt for the vault password",
        ),
    ],
)
def test_make_verify_stops_on_a_target_it_cannot_use(args, message):
    result = make_here("verify", *args, timeout=120, check=False)
    assert result.returncode != 0, f"make verify {args} exited 0: {result.stdout}"
    assert message in result.stderr + result.stdout, result.stderr + result.stdout
