import pytest

from support.k8s import K8S, MIN_KUSTOMIZE, OVERLAYS, Render, kustomize_version, render


@pytest.fixture(scope="session")
def kustomize():
    """kubectl with a built-in kustomize new enough for `labels` and the other fields used."""
    version = kustomize_version()
    if version < MIN_KUSTOMIZE:
        pytest.fail(f"kubectl's kustomize is {version}, expected at least {MIN_KUSTOMIZE}")
    return version


@pytest.fixture(scope="session")
def renders(kustomize) -> dict[str, Render]:
    """Every overlay, rendered once for the session."""
    return {name: Render(name, render(K8S / "overlays" / name)) for name in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request, renders) -> Render:
    return renders[request.param]


@pytest.fixture
def dev(renders) -> Render:
    return renders["dev"]


@pytest.fixture
def prod(renders) -> Render:
    return renders["prod"]
