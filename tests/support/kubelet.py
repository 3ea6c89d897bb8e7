"""Run a rendered overlay's pods in Docker, the way a kubelet would run them, as far as that
can be done without a cluster: each container with its image, command, environment, user,
read-only root filesystem, dropped capabilities, emptyDir (a tmpfs), ConfigMap (files written
from the render, mounted read-only) and PersistentVolumeClaim (a Docker volume) mounts; the
Job and the init containers run to completion first; Services become DNS aliases on one
network (Docker's DNS answers every container behind an alias, as a headless Service does).

What differs from a cluster: no Pod Security admission, no NetworkPolicy, a Docker network
instead of the pod network; `status.podIP` is given as the network's CIDR, from which the
Pushpin entrypoint picks the container's own address (in Kubernetes: the pod IP).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import docker

from support.k8s import Render, container_port, pod_labels, pod_spec

LABEL = "rtdash.test"


class PodFailed(AssertionError):
    pass


class DockerKubelet:
    def __init__(self, client: docker.DockerClient, render: Render, workdir: Path, secret_data):
        self.client, self.render, self.workdir = client, render, workdir
        self.secret_data = secret_data  # {secret name: {key: value}}
        self.prefix = f"rtdash-k8s-{secrets.token_hex(3)}"
        self.network = client.networks.create(self.prefix, labels={LABEL: self.prefix})
        self.network.reload()
        self.subnet = self.network.attrs["IPAM"]["Config"][0]["Subnet"]
        self.containers: list = []
        self.volumes: dict[str, str] = {}

    # -- translating a container spec -----------------------------------------------------

    def _env(self, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.render.config_map_data(source["configMapRef"]["name"]))
            elif "secretRef" in source:
                env.update(self.secret_data[source["secretRef"]["name"]])
        for entry in container.get("env", []):
            ref = entry.get("valueFrom")
            if ref is None:
                env[entry["name"]] = entry.get("value", "")
            elif "secretKeyRef" in ref:
                key_ref = ref["secretKeyRef"]
                env[entry["name"]] = self.secret_data[key_ref["name"]][key_ref["key"]]
            elif "configMapKeyRef" in ref:
                key_ref = ref["configMapKeyRef"]
                env[entry["name"]] = self.render.config_map_data(key_ref["name"])[key_ref["key"]]
            elif ref.get("fieldRef", {}).get("fieldPath") == "status.podIP":
                env[entry["name"]] = self.subnet
            else:
                raise NotImplementedError(f"env {entry['name']}: {ref}")
        return env

    def _config_map_dir(self, name: str, items: list | None) -> Path:
        data = self.render.config_map_data(name)
        directory = self.workdir / f"{name}-{secrets.token_hex(2)}"
        directory.mkdir()
        for item in items or [{"key": k, "path": k} for k in data]:
            path = directory / item["path"]
            path.write_text(data[item["key"]])
            path.chmod(0o644)
        directory.chmod(0o755)
        return directory

    def _mounts(self, workload: dict, container: dict, user: tuple[int, int]):
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        binds, tmpfs = {}, {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            mode = "ro" if mount.get("readOnly") else "rw"
            if "emptyDir" in volume:
                # Kubernetes makes an emptyDir writable for the pod (mode 0777, group fsGroup);
                # Docker gives a tmpfs the mode of the image's directory, so owner it is.
                tmpfs[mount["mountPath"]] = f"uid={user[0]},gid={user[1]}"
            elif "configMap" in volume:
                source = self._config_map_dir(
                    volume["configMap"]["name"], volume["configMap"].get("items")
                )
                if "subPath" in mount:
                    source = source / mount["subPath"]
                binds[str(source)] = {"bind": mount["mountPath"], "mode": "ro"}
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if claim not in self.volumes:
                    name = f"{self.prefix}-{claim}"
                    self.client.volumes.create(name, labels={LABEL: self.prefix})
                    self.volumes[claim] = name
                binds[self.volumes[claim]] = {"bind": mount["mountPath"], "mode": mode}
            else:
                raise NotImplementedError(f"volume {volume}")
        return binds, tmpfs

    def _aliases(self, workload: dict) -> list[str]:
        labels = pod_labels(workload)
        return [
            s["metadata"]["name"]
            for s in self.render.of_kind("Service")
            if s["spec"].get("selector")
            and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
        ]

    def run(self, workload: dict, container: dict, ordinal: int = 0, detach: bool = True, **kw):
        spec = pod_spec(workload)
        ctx = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
        user = (ctx["runAsUser"], ctx.get("runAsGroup", ctx["runAsUser"]))
        binds, tmpfs = self._mounts(workload, container, user)
        name = f"{self.prefix}-{workload['metadata']['name']}-{ordinal}-{container['name']}"
        created = self.client.containers.create(
            container["image"],
            name=name,
            entrypoint=container.get("command"),
            command=container.get("args"),
            environment=self._env(container),
            user=f"{user[0]}:{user[1]}",
            group_add=[str(spec["securityContext"]["fsGroup"])]
            if "fsGroup" in spec.get("securityContext", {})
            else None,
            read_only=ctx.get("readOnlyRootFilesystem", False),
            cap_drop=ctx.get("capabilities", {}).get("drop"),
            security_opt=["no-new-privileges"] if not ctx.get("allowPrivilegeEscalation") else None,
            tmpfs=tmpfs,
            volumes=binds,
            labels={LABEL: self.prefix},
            network=self.prefix,
            networking_config={
                self.prefix: docker.types.EndpointConfig(
                    self.client.api.api_version, aliases=self._aliases(workload)
                )
            },
            detach=True,
            **kw,
        )
        self.containers.append(created)
        created.start()
        if not detach:
            result = created.wait(timeout=300)
            if result["StatusCode"] != 0:
                raise PodFailed(
                    f"{name} exited {result['StatusCode']}:\n{created.logs().decode()[-3000:]}"
                )
        return created

    # -- probes ---------------------------------------------------------------------------

    def probe(self, running, container: dict, kind: str) -> tuple[bool, str]:
        """Run one of the container's probes the way the kubelet does; (passed, output)."""
        probe = container[kind]
        timeout = probe.get("timeoutSeconds", 1)
        if "exec" in probe:
            command = ["timeout", str(timeout), *probe["exec"]["command"]]
        elif "httpGet" in probe:
            get = probe["httpGet"]
            port = container_port(container, get["port"])["containerPort"]
            headers = [f"-H{h['name']}: {h['value']}" for h in get.get("httpHeaders", [])]
            url = f"http://127.0.0.1:{port}{get.get('path', '/')}"
            # The kubelet counts 200-399 as success, and does not follow redirects off-host.
            command = ["curl", "-sS", "-o", "/dev/null", "-m", str(timeout), *headers]
            command += ["-w", "%{http_code}", url]
            result = running.exec_run(command)
            code = result.output.decode().strip()[-3:]
            return code.isdigit() and 200 <= int(code) < 400, result.output.decode()
        else:
            raise NotImplementedError(f"{kind}: {probe}")
        result = running.exec_run(command)
        return result.exit_code == 0, result.output.decode()

    def wait_probe(self, running, container: dict, kind: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        output = ""
        while time.monotonic() < deadline:
            running.reload()
            if running.status != "running":
                raise PodFailed(f"{running.name} stopped:\n{running.logs().decode()[-3000:]}")
            passed, output = self.probe(running, container, kind)
            if passed:
                return
            time.sleep(1)
        raise PodFailed(
            f"{running.name}: {kind} did not pass within {timeout}s (last output: {output!r})\n"
            f"{running.logs().decode()[-3000:]}"
        )

    def cleanup(self) -> None:
        for container in self.containers:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
        for name in self.volumes.values():
            self.client.volumes.get(name).remove(force=True)
        self.network.remove()
