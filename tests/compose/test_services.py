"""pytest-testinfra against the running compose stack, what only compose has: the control
subnet it was given, the generated signing key in the rendered config, nginx's own config
test. Users, listeners, config files, published and control ports: the verify suite
(tests/verify, run on this stack by test_verify.py)."""

import pytest
import testinfra

pytestmark = pytest.mark.slow


def host_of(container):
    return testinfra.get_host(f"docker://{container.name}")


def test_pushpin_publishes_on_the_control_subnet_the_stack_was_given(stack):
    # (That it listens on that address and nowhere else: the verify suite's listeners.)
    for container in stack.containers("pushpin"):
        control = stack.address(container, "control")
        assert control.startswith(stack.control_subnet.rsplit(".", 1)[0] + "."), (
            f"{container.name}: control address {control} outside {stack.control_subnet}"
        )


def test_pushpin_runs_with_the_generated_signing_key(stack):
    key = stack.secrets()["PUSHPIN_SIG_KEY"]
    for container in stack.containers("pushpin"):
        rendered = host_of(container).file("/run/pushpin/pushpin.conf")
        assert rendered.mode == 0o600, (
            f"{container.name}: rendered config (holds the key) mode {oct(rendered.mode)}"
        )
        assert f"sig_key={key}\n" in rendered.content_string
        assert "changeme" not in rendered.content_string


def test_nginx_validates_its_config(stack):
    for container in stack.containers("nginx"):
        result = host_of(container).run("nginx -t")
        assert result.rc == 0, f"{container.name}: nginx -t failed: {result.stderr}"
