"""An overlay is a short list of choices: the base, the optional features as kustomize Components
under k8s/components (database, Ingress with TLS, autoscaling, monitoring, registry
credentials) and the few values
only it has. Every component is chosen by an overlay or documented as optional, an overlay
renders with exactly the components it declares (their objects and their patches, nothing
else), and overlays of one's own as the README composes them render and keep the rules."""

import shutil

import pytest
import yaml

from support.k8s import (
    COMPONENTS,
    K8S,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    REPO,
    Render,
    components_of,
    containers,
    copy_tree_for_kustomize,
    env_value,
    image_env,
    image_of,
    is_local_config,
    kustomization,
    object_ids,
    own_objects,
    pod_security_problems,
    render,
    schema_errors,
)

# What an overlay states: choices and its own values, no more. (`patches`: where a component's
# default does not fit, such as the database's address; the README's "Your values".)
OVERLAY_FIELDS = {
    *("apiVersion", "kind", "namespace", "resources", "components", "replicas", "images"),
    "patches",
}
DATABASES = {"postgresql", "sqlite"}


def _app_containers(overlay):
    return [c for w in overlay.workloads() for c in containers(w) if image_of(c) == "app"]


def _app_settings(overlay):
    (settings,) = [
        cm["data"]
        for cm in overlay.of_kind("ConfigMap")
        if cm["metadata"]["name"].startswith("app-settings-")
    ]
    return settings


def _sqlite_mounted(overlay):
    data_dir = image_env("app", "DJANGO_DATA_DIR")
    return [
        any(m["mountPath"] == data_dir for m in c.get("volumeMounts", []))
        for c in _app_containers(overlay)
    ]


# What each component does to a render, its objects and its patches: with the component listed,
# every one of these holds; without it, none does.
EFFECTS = {
    "postgresql": lambda r: {
        "DATABASE_URL in each app-image container": all(
            env_value(c, "DATABASE_URL") for c in _app_containers(r)
        ),
        "DATABASE_URL in an app-image container": any(
            env_value(c, "DATABASE_URL") for c in _app_containers(r)
        ),
        "NetworkPolicy database": r.find("NetworkPolicy", "database") is not None,
    },
    "sqlite": lambda r: {
        "the data volume in each app-image container": all(_sqlite_mounted(r)),
        "the data volume in an app-image container": any(_sqlite_mounted(r)),
        "PersistentVolumeClaim app-data": r.find("PersistentVolumeClaim", "app-data") is not None,
    },
    "ingress-tls": lambda r: {
        "Ingresses": bool(r.of_kind("Ingress")),
        "nginx only from the ingress controller": any(
            rule.get("from") for rule in r.get("NetworkPolicy", "nginx")["spec"]["ingress"]
        ),
        "DJANGO_SECURE_COOKIES": _app_settings(r).get("DJANGO_SECURE_COOKIES") == "1",
    },
    "autoscaling": lambda r: {
        "HorizontalPodAutoscalers": bool(r.of_kind("HorizontalPodAutoscaler"))
    },
    "monitoring": lambda r: {
        "ServiceMonitor": bool(r.of_kind("ServiceMonitor")),
        "PrometheusRule": bool(r.of_kind("PrometheusRule")),
    },
    "registry-credentials": lambda r: {
        "every pod's ServiceAccount pulls with registry-credentials": all(
            {"name": "registry-credentials"} in sa.get("imagePullSecrets", [])
            for sa in r.of_kind("ServiceAccount")
        ),
        "a ServiceAccount pulls with registry-credentials": any(
            {"name": "registry-credentials"} in sa.get("imagePullSecrets", [])
            for sa in r.of_kind("ServiceAccount")
        ),
    },
}


def component_names():
    return sorted(d.name for d in COMPONENTS.iterdir() if (d / "kustomization.yaml").is_file())


@pytest.fixture(scope="module")
def base_ids(kustomize):
    return object_ids(render(K8S / "base"))


def test_every_component_is_a_kustomize_component():
    assert set(component_names()) == set(EFFECTS), (
        f"k8s/components has {component_names()}; this test knows {sorted(EFFECTS)}"
    )
    for name in component_names():
        k = kustomization(COMPONENTS / name)
        assert (k.get("apiVersion"), k.get("kind")) == (
            "kustomize.config.k8s.io/v1alpha1",
            "Component",
        ), f"k8s/components/{name}: expected a kustomize Component, got {k.get('kind')}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlays_are_short_lists_of_choices(name):
    directory = K8S / "overlays" / name
    k = kustomization(directory)
    extra = sorted(set(k) - OVERLAY_FIELDS)
    assert not extra, (
        f"k8s/overlays/{name} states {extra}: an overlay lists choices ({sorted(OVERLAY_FIELDS)}); "
        "what it would patch belongs in a component"
    )
    assert k["resources"][0] == "../../base", f"{name}: expected the base first: {k['resources']}"
    for entry in k["resources"][1:]:
        objects = yaml.safe_load_all((directory / entry).read_text())
        assert all(is_local_config(o) for o in objects if o), (
            f"{name}: {entry} is not a local-config value (its objects would be applied)"
        )
    chosen = components_of(directory)
    assert len(DATABASES & set(chosen)) == 1, f"{name}: expected one database of {DATABASES}"


def _readme_components():
    """{component: the README's "in" column} from the components table of the Kubernetes section."""
    section = (REPO / "README.md").read_text().split("## Deploying to Kubernetes", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        if len(cells) == 3 and cells[0] == f"`{name}`" and (COMPONENTS / name).is_dir():
            rows[name] = cells[2]
    return rows


def test_every_component_is_chosen_or_documented_as_optional():
    used = {name: [o for o in OVERLAYS if name in components_of(K8S / "overlays" / o)]
            for name in component_names()}  # fmt: skip
    documented = _readme_components()
    expected = {name: ", ".join(o) or "optional" for name, o in used.items()}
    assert documented == expected, (
        "the README's components table (component | what it adds | in) should list every "
        f"component with the overlays that choose it, or `optional`:\n  expected {expected}\n"
        f"  README   {documented}"
    )


def _expected_ids(directory, base_ids):
    ids = set(base_ids)
    for name in components_of(directory):
        ids |= object_ids(own_objects(COMPONENTS / name))
    return ids


def _check_components(render_, directory, base_ids):
    chosen = components_of(directory)
    assert object_ids(render_.objects) == _expected_ids(directory, base_ids), (
        f"{render_.name}: expected the base's objects and those of {chosen}, got extra "
        f"{sorted(object_ids(render_.objects) - _expected_ids(directory, base_ids))}, missing "
        f"{sorted(_expected_ids(directory, base_ids) - object_ids(render_.objects))}"
    )
    for name, effect in EFFECTS.items():
        facts = effect(render_)
        wrong = [fact for fact, holds in facts.items() if holds != (name in chosen)]
        assert not wrong, (
            f"{render_.name}: component {name} is {'' if name in chosen else 'not '}listed, "
            f"but the render {'lacks' if name in chosen else 'has'}: {wrong}"
        )


def test_an_overlay_renders_exactly_the_components_it_declares(overlay, base_ids):
    _check_components(overlay, K8S / "overlays" / overlay.name, base_ids)


def test_local_config_values_stay_out_of_the_render(overlay):
    leaked = [f"{o['kind']}/{o['metadata']['name']}" for o in overlay.objects if is_local_config(o)]
    assert not leaked, f"{overlay.name}: local-config objects in the render: {leaked}"
    assert not overlay.of_kind("Pod"), f"{overlay.name}: a Pod (hardening.yaml's?) was rendered"


# -- overlays of one's own, as the README composes them ------------------------------------------


def _without_autoscaling(k):
    k["components"].remove("../../components/autoscaling")
    k["replicas"] += [{"name": "app", "count": 2}, {"name": "nginx", "count": 2}]


def _with_sqlite(k):
    k["components"][k["components"].index("../../components/postgresql")] = (
        "../../components/sqlite"
    )


def _readme_patches():
    """The `patches:` example of the README's "Your values (prod)"."""
    section = (REPO / "README.md").read_text().split("**3. Your values (prod).**", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)["patches"]


def _with_own_addresses(k):
    k["patches"] = _readme_patches()


def _with_registry_credentials(k):
    k["components"].append("../../components/registry-credentials")


OWN = {
    "prod-without-autoscaling": _without_autoscaling,
    "prod-with-sqlite": _with_sqlite,
    "prod-with-own-addresses": _with_own_addresses,
    "prod-with-registry-credentials": _with_registry_credentials,
}


def _render_own(tree, name):
    prod, directory = tree / "k8s/overlays/prod", tree / "k8s/overlays" / name
    shutil.copytree(prod, directory, dirs_exist_ok=True)
    k = kustomization(prod)
    OWN[name](k)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(k))
    return Render(name, render(directory)), directory


@pytest.fixture(scope="module")
def own_tree(kustomize, tmp_path_factory):
    return copy_tree_for_kustomize(tmp_path_factory.mktemp("own"))


@pytest.fixture(scope="module", params=sorted(OWN))
def own(request, own_tree):
    return _render_own(own_tree, request.param)


def test_own_overlays_render_with_their_components(own, base_ids):
    overlay, directory = own
    _check_components(overlay, directory, base_ids)
    problems = pod_security_problems(overlay)
    for version in KUBERNETES_VERSIONS:
        problems += [e for obj in overlay.objects for e in schema_errors(obj, version)]
    assert not problems, f"{overlay.name}:\n" + "\n".join(problems)


def test_own_overlays_keep_their_counts(own):
    overlay, _ = own
    counts = {
        d["metadata"]["name"]: d["spec"].get("replicas") for d in overlay.of_kind("Deployment")
    }
    if overlay.of_kind("HorizontalPodAutoscaler"):
        assert counts["app"] is None and counts["nginx"] is None, f"{overlay.name}: {counts}"
    else:
        assert counts["app"] >= 2 and counts["nginx"] >= 2, f"{overlay.name}: {counts}"
    assert counts["pushpin"] == 3, f"{overlay.name}: {counts}"


def test_the_readme_patches_set_the_addresses(own_tree):
    overlay, _ = _render_own(own_tree, "prod-with-own-addresses")
    database = overlay.get("NetworkPolicy", "database")["spec"]["egress"][0]["to"]
    nginx = overlay.get("NetworkPolicy", "nginx")["spec"]["ingress"][0]["from"][0]
    controller = nginx["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    assert database == [{"ipBlock": {"cidr": "10.0.5.20/32"}}], f"database: {database}"
    assert controller == "traefik", f"nginx from the namespace {controller}, expected traefik"
