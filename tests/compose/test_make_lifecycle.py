"""`make up` twice is harmless (nothing recreated, secrets kept); `make down` leaves nothing."""

import pytest

from support.stack import new_stack

pytestmark = pytest.mark.slow

LONG_RUNNING = ("app", "ticker", "pushpin", "nginx")


def running_state(stack):
    return {
        c.name: (c.id, c.attrs["State"]["StartedAt"])
        for c in stack.containers()
        if c.labels["com.docker.compose.service"] in LONG_RUNNING
    }


def test_make_up_twice_then_make_down(docker_client, tmp_path):
    stack = new_stack(tmp_path, "rtdash-lifecycle", "172.31.63.0/24")
    stack.destroy()
    try:
        first = stack.make("up")
        assert "==> Secrets: generated" in first.stdout
        assert f"==> Dashboard: http://127.0.0.1:{stack.http_port}/" in first.stdout, first.stdout
        before, secrets = running_state(stack), stack.env_file.read_text()
        assert len(before) == 5, (
            f"expected app, ticker, nginx and 2 pushpin nodes: {sorted(before)}"
        )
        assert stack.env_file.stat().st_mode & 0o077 == 0, "secrets file readable by others"

        second = stack.make("up")
        assert "==> Secrets: keeping" in second.stdout
        assert running_state(stack) == before, (
            "the second `make up` recreated or restarted containers"
        )
        assert stack.env_file.read_text() == secrets, "the second `make up` changed the secrets"
        stack.wait_healthy()

        stack.make("down")
        left = [f"{c.name} ({c.status})" for c in stack.containers(all=True)]
        assert not left, f"`make down` left containers behind: {left}"
    finally:
        stack.destroy()
