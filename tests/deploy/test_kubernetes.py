"""The kustomize base in deploy/kubernetes, built offline the way `kubectl apply -k` builds it.

Core kinds are checked by kubernetes-validate in strict mode; ServiceMonitor,
PrometheusRule and AlertmanagerConfig against the prometheus-operator CRDs'
openAPIV3Schema (tests/deploy/crds), made strict the way `kubectl apply`
rejects unknown fields. Then what the objects promise: the pod's probes,
security and config mount, the exact rules, the routes, the dashboards, the
HA and sharded variants, and the exporter picking up a ConfigMap update.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml

from exporter.config import parse_config
from tests.exporter.exporter_process import serve
from tests.support import ROOT, require_binary, wait_for

BASE = ROOT / "deploy" / "kubernetes"
COMPONENTS = BASE / "components"
CRDS = Path(__file__).resolve().parent / "crds"
CRD_FILES = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "AlertmanagerConfig": "monitoring.coreos.com_alertmanagerconfigs.yaml",
}
# The oldest Kubernetes still widely run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
VARIANTS = {"base": [], "ha": ["ha"], "sharded": ["sharded"]}
# kubectl apply keeps the whole object in an annotation limited to 256 KiB.
LAST_APPLIED_LIMIT = 262144
# What the image runs after its `probewatch` entrypoint; the StatefulSet's args repeat it.
IMAGE_CMD = json.loads(re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)[1])  # type: ignore[index]


class _Loader(yaml.SafeLoader):
    """PyYAML reads a bare `=` (a matchType, in the CRDs and kustomize's output) as a tag."""


def _as_string(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:value", _as_string)


def kustomize(tmp_path: Path, components: list[str]) -> list[dict[str, Any]]:
    kubectl = require_binary("kubectl")
    target = BASE
    if components:
        # An overlay of the user's own: the base plus components, by relative path.
        target = tmp_path / "overlay"
        target.mkdir()
        (target / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(BASE, target)],
            "components": [os.path.relpath(COMPONENTS / c, target) for c in components],
        }))
    result = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.load_all(result.stdout, Loader=_Loader) if doc]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(tmp_path_factory.mktemp(name), parts) for name, parts in VARIANTS.items()}


def one(resources: list[dict[str, Any]], kind: str, name: str = "") -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind and (not name or r["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workload(resources: list[dict[str, Any]]) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [r["kind"] for r in found]
    return found[0]


def container(resources: list[dict[str, Any]]) -> dict[str, Any]:
    containers = workload(resources)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def strict(schema: Any) -> Any:
    """The schema with unknown fields rejected wherever the CRD does not keep them."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_validator(kind: str) -> tuple[str, Any]:
    crd = yaml.load((CRDS / CRD_FILES[kind]).read_text(), Loader=_Loader)
    version = next(v for v in crd["spec"]["versions"] if v.get("served"))
    api = f"{crd['spec']['group']}/{version['name']}"
    schema = strict(version["schema"]["openAPIV3Schema"])
    # Object metadata is the API server's to check, as for core kinds.
    schema["properties"]["metadata"] = {"type": "object"}
    return api, jsonschema.Draft7Validator(schema)


def test_generated_manifests_are_current() -> None:
    """PrometheusRule, AlertmanagerConfig, dashboards and StatefulSet match their sources."""
    result = subprocess.run([sys.executable, str(BASE / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_base_builds_offline_into_a_complete_deployment(built: dict[str, Any]) -> None:
    kinds = sorted(r["kind"] for r in built["base"])
    assert kinds == sorted(["Namespace", "ConfigMap", "ConfigMap", "ConfigMap", "Service",
                            "Deployment", "ServiceMonitor", "PrometheusRule",
                            "AlertmanagerConfig"])
    for variant, resources in built.items():
        for r in resources:
            if r["kind"] != "Namespace":
                assert r["metadata"].get("namespace") == "probewatch", (variant, r["kind"])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_core_kinds_pass_strict_kubernetes_validation(built: dict[str, Any], variant: str) -> None:
    checked = 0
    for resource in built[variant]:
        if "monitoring.coreos.com" in resource["apiVersion"]:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{variant}: {resource['kind']} {resource['metadata']['name']} "
                            f"(Kubernetes {version}): {exc.caught.message} at "
                            f"{'/'.join(map(str, exc.caught.absolute_path))}")
            checked += 1
    assert checked >= 6 * len(KUBERNETES_VERSIONS)


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_operator_objects_match_their_crd_schemas(built: dict[str, Any], kind: str) -> None:
    api, validator = crd_validator(kind)
    for variant, resources in built.items():
        resource = one(resources, kind)
        assert resource["apiVersion"] == api
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(resource)]
        assert not errors, f"{variant} {kind}:\n" + "\n".join(errors)


def test_crd_check_rejects_unknown_fields() -> None:
    """The CRD schemas are applied strictly: a misspelt field does not slip through."""
    _, validator = crd_validator("ServiceMonitor")
    typo = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "x"},
            "spec": {"selector": {}, "endpoints": [{"port": "http", "intervall": "15s"}]}}
    assert any("intervall" in e.message for e in validator.iter_errors(typo))


def test_prometheusrule_carries_exactly_the_shipped_rules(built: dict[str, Any],
                                                          tmp_path: Path) -> None:
    rule = one(built["base"], "PrometheusRule")
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    assert rule["spec"]["groups"] == shipped["groups"]
    promtool = require_binary("promtool")
    path = tmp_path / "spec.yml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_find_the_exporters_by_the_service_name(built: dict[str, Any]) -> None:
    """The ServiceMonitor's job label is the Service's name; the rules look for that job."""
    service = one(built["base"], "Service")
    rules = (ROOT / "deploy" / "prometheus" / "rules.yml").read_text()
    assert set(re.findall(r'job="([^"]+)"', rules)) == {service["metadata"]["name"]}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pod_probes_resources_and_security(built: dict[str, Any], variant: str) -> None:
    resources = built[variant]
    pod = workload(resources)["spec"]["template"]["spec"]
    c = container(resources)
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port == {"http": 9637}
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    for bound in ("requests", "limits"):
        assert set(c["resources"][bound]) == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}, "icmp needs no NET_RAW: see ping_group_range"
    sysctls = {s["name"]: s["value"] for s in pod["securityContext"]["sysctls"]}
    low, high = map(int, sysctls["net.ipv4.ping_group_range"].split())
    assert low <= pod["securityContext"]["runAsGroup"] <= high, "icmp sockets need the pod's group"
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_probe_config_is_mounted_so_updates_reach_the_exporter(built: dict[str, Any],
                                                               variant: str) -> None:
    resources = built[variant]
    pod = workload(resources)["spec"]["template"]["spec"]
    mount = next(m for m in container(resources)["volumeMounts"] if m["name"] == "config")
    # A whole-directory mount: kubelet never updates subPath mounts.
    assert mount["mountPath"] == "/etc/probewatch" and "subPath" not in mount
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    configmap = one(resources, "ConfigMap", volume["configMap"]["name"])
    # No content-hash suffix: an edit changes this ConfigMap in place.
    assert configmap["metadata"]["name"] == "probewatch-config"
    assert list(configmap["data"]) == ["probewatch.yml"]
    writable = {m["mountPath"] for m in container(resources)["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/tmp"}


def test_shipped_probe_config_loads(built: dict[str, Any]) -> None:
    text = one(built["base"], "ConfigMap", "probewatch-config")["data"]["probewatch.yml"]
    config = parse_config(text, "probewatch.yml", check_env=False)
    assert config.probes, "the shipped config runs at least one probe"


def test_service_and_servicemonitor_reach_the_pods(built: dict[str, Any]) -> None:
    for variant, resources in built.items():
        service, monitor = one(resources, "Service"), one(resources, "ServiceMonitor")
        pod_labels = workload(resources)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items(), variant
        wanted = monitor["spec"]["selector"]["matchLabels"]
        assert wanted.items() <= service["metadata"]["labels"].items(), variant
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        endpoint = monitor["spec"]["endpoints"][0]
        assert endpoint["path"] == "/metrics"
        assert ports[endpoint["port"]]["targetPort"] == "http"


def test_dashboards_ship_as_grafana_sidecar_configmaps(built: dict[str, Any]) -> None:
    shipped = {p.name: json.loads(p.read_text()) for p in (ROOT / "dashboards").glob("*.json")}
    found = {}
    for r in built["base"]:
        if r["kind"] == "ConfigMap" and r["metadata"].get("labels", {}).get("grafana_dashboard"):
            assert r["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert len(json.dumps(r)) < LAST_APPLIED_LIMIT, "too big for kubectl apply"
            found.update({k: json.loads(v) for k, v in r["data"].items()})
    assert found == shipped


def _route_back(route: dict[str, Any]) -> dict[str, Any]:
    """An AlertmanagerConfig route in alertmanager.yml terms, for amtool."""
    keys = {"receiver": "receiver", "groupBy": "group_by", "continue": "continue"}
    out = {keys[k]: v for k, v in route.items() if k in keys}
    out["matchers"] = [f'{m["name"]}{m.get("matchType", "=")}{json.dumps(m["value"])}'
                       for m in route.get("matchers", [])]
    out["routes"] = [_route_back(r) for r in route.get("routes", [])]
    return out


ROUTING_CASES = [
    {"alertname": "ProbeFailing", "group": "web", "severity": "critical"},
    {"alertname": "ProbeFailing", "group": "web", "severity": "warning"},
    {"alertname": "ProbeFailing", "group": "database", "severity": "critical"},
    {"alertname": "ProbeFailing", "group": "database", "severity": "warning"},
    {"alertname": "ProbeFailing", "group": "elsewhere", "severity": "warning"},
    {"alertname": "ProbeCertificateExpiring", "group": "web", "severity": "warning"},
    {"alertname": "ProbeExporterDown", "severity": "critical"},
    {"alertname": "ProbewatchConfigReloadFailed", "severity": "warning"},
    {"alertname": "ProbeUnwatched", "group": "web", "severity": "none"},
]


def test_alertmanagerconfig_routes_every_alert_to_the_same_recipients(
        built: dict[str, Any], tmp_path: Path) -> None:
    """amtool routes the same alerts the same way through alertmanager.yml and the CRD object."""
    amtool = require_binary("amtool")
    spec = one(built["base"], "AlertmanagerConfig")["spec"]
    source = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    recipients = {r["name"]: [e["to"] for e in r.get("email_configs", [])]
                  for r in source["receivers"]}
    converted = {r["name"]: [e["to"] for e in r.get("emailConfigs", [])] for r in spec["receivers"]}
    assert converted == recipients
    back = tmp_path / "from-crd.yml"
    back.write_text(yaml.safe_dump({
        "route": _route_back(spec["route"]),
        "receivers": [{"name": r["name"]} for r in spec["receivers"]],
    }))

    def receivers(config: Path, labels: dict[str, str]) -> str:
        result = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={config}",
             *(f"{k}={v}" for k, v in labels.items())],
            capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    original = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
    for labels in ROUTING_CASES:
        assert receivers(back, labels) == receivers(original, labels), labels


def test_ha_variant_runs_two_replicas_apart(built: dict[str, Any]) -> None:
    resources = built["ha"]
    deployment = one(resources, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    term = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    pdb = one(resources, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items())
    # Both replicas run every probe.
    assert "args" not in container(resources)


def test_sharded_variant_is_the_same_pod_split_by_ordinal(built: dict[str, Any]) -> None:
    statefulset = one(built["sharded"], "StatefulSet")
    assert not [r for r in built["sharded"] if r["kind"] == "Deployment"]
    c = container(built["sharded"])
    env = {e["name"]: e["value"] for e in c.get("env", [])}
    assert c["args"] == [*IMAGE_CMD, "--shard-from-hostname"]  # args replace the image's CMD
    assert int(env["PROBEWATCH_SHARDS"]) == statefulset["spec"]["replicas"]
    base_pod = one(built["base"], "Deployment")["spec"]["template"]
    sharded_pod = json.loads(json.dumps(statefulset["spec"]["template"]))
    del sharded_pod["spec"]["containers"][0]["args"], sharded_pod["spec"]["containers"][0]["env"]
    assert sharded_pod == base_pod


@pytest.fixture
def tcp_config(tmp_path: Path) -> Path:
    path = tmp_path / "probewatch.yml"
    probes = [{"name": f"site-{i}", "kind": "tcp", "target": "127.0.0.1:9"} for i in range(12)]
    path.write_text(yaml.safe_dump({"defaults": {"period": "1m", "timeout": "1s"},
                                    "probes": probes}))
    return path


def test_statefulset_pods_each_run_their_own_shard(built: dict[str, Any], tcp_config: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Started with the StatefulSet's args and env under pod names probewatch-0..N-1."""
    c = container(built["sharded"])
    shards = int({e["name"]: e["value"] for e in c["env"]}["PROBEWATCH_SHARDS"])
    monkeypatch.setenv("PROBEWATCH_SHARDS", str(shards))
    seen: dict[str, set[str]] = {}
    for ordinal in range(shards):
        monkeypatch.setenv("HOSTNAME", f"probewatch-{ordinal}")
        assert c["args"][:len(IMAGE_CMD)] == IMAGE_CMD  # serve() starts `serve` on its own config
        with serve(tcp_config, *c["args"][len(IMAGE_CMD):]) as exporter:
            info = exporter.value("probewatch_shard_info")
            assert info == 1
            labels = next(dict(labs) for (name, labs) in exporter.samples()
                          if name == "probewatch_shard_info")
            assert labels == {"shard": str(ordinal), "shards": str(shards)}
            seen[str(ordinal)] = {dict(labs)["probe"] for (name, labs) in exporter.samples()
                                  if name == "probewatch_probe_runs_total"}
    probes = [set(s) for s in seen.values()]
    assert set().union(*probes) == {f"site-{i}" for i in range(12)}
    assert sum(len(p) for p in probes) == 12, "a probe ran in two shards"


def _kubelet_update(directory: Path, text: str, generation: int) -> None:
    """Swap in new ConfigMap content as kubelet does: a new ..data directory, one rename."""
    data = directory / f"..2024_01_01_00_00_0{generation}.000000000"
    data.mkdir()
    (data / "probewatch.yml").write_text(text)
    tmp_link = directory / "..data_tmp"
    tmp_link.symlink_to(data.name)
    old = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    os.replace(tmp_link, directory / "..data")
    if old:
        shutil.rmtree(directory / old)
    if not (directory / "probewatch.yml").is_symlink():
        (directory / "probewatch.yml").symlink_to("..data/probewatch.yml")


def test_configmap_update_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    """The exporter re-reads the mounted file when kubelet swaps in a new ConfigMap version."""
    mounted = tmp_path / "etc-probewatch"
    mounted.mkdir()
    probe = {"kind": "tcp", "target": "127.0.0.1:9", "period": "1m", "timeout": "1s"}
    _kubelet_update(mounted, yaml.safe_dump({"probes": [{"name": "before", **probe}]}), 1)
    with serve(mounted / "probewatch.yml", "--config.watch-interval=200ms") as exporter:
        pid = exporter.proc.pid
        assert exporter.value("probewatch_probe_runs_total", probe="before") is not None
        started = time.monotonic()
        _kubelet_update(mounted, yaml.safe_dump({"probes": [{"name": "after", **probe}]}), 2)

        def reloaded() -> bool:
            text = requests.get(exporter.url + "/metrics", timeout=5).text
            return 'probe="after"' in text and 'probe="before"' not in text

        wait_for(reloaded, 10, interval=0.1, what="the exporter to load the new ConfigMap")
        assert time.monotonic() - started < 10
        assert exporter.proc.poll() is None and exporter.proc.pid == pid


def test_image_matches_what_the_pod_expects(built: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pod = one(built["base"], "Deployment")["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert user, "the image runs as a numeric non-root user"
    assert (int(user[1]), int(user[2])) == (pod["securityContext"]["runAsUser"],
                                            pod["securityContext"]["runAsGroup"])
    assert int(user[1]) != 0
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert base and re.fullmatch(r"python:3\.11[.\w-]*-slim[\w.-]*", base[1]), "pinned 3.11 slim"
    assert 'pip install ".[sip]"' in dockerfile
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M)[1])  # type: ignore[index]
    assert entrypoint == ["probewatch"]  # so `docker run IMAGE check ...` and `... agent ...` just work
    assert IMAGE_CMD == ["serve", "--config.file=/etc/probewatch/probewatch.yml",
                         "--web.listen-address=0.0.0.0:9637"]
    assert "args" not in one(built["base"], "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which is not in the repo"



def test_documented_overlay_builds_as_described(tmp_path: Path) -> None:
    """docs/kubernetes.md's overlay example: image, probes, release label, 5 shards."""
    kubectl = require_binary("kubectl")
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    block = re.search(r"<!-- overlay example[^>]*-->\s*```yaml\n(.*?)```", docs, re.S)
    assert block, "docs/kubernetes.md lost its overlay example"
    (tmp_path / "probewatch").symlink_to(ROOT)
    overlay = tmp_path / "my-probewatch"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(block[1])
    mine = {"probes": [{"name": "mine", "kind": "tcp", "target": "127.0.0.1:9"}]}
    (overlay / "probewatch.yml").write_text(yaml.safe_dump(mine))
    result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    resources = [d for d in yaml.load_all(result.stdout, Loader=_Loader) if d]
    statefulset = one(resources, "StatefulSet")
    c = container(resources)
    assert statefulset["spec"]["replicas"] == 5
    assert {e["name"]: e["value"] for e in c["env"]}["PROBEWATCH_SHARDS"] == "5"
    assert c["image"] == "registry.example.invalid/probewatch:0.1.0"
    assert yaml.safe_load(one(resources, "ConfigMap", "probewatch-config")["data"]["probewatch.yml"]) == mine
    for kind in CRD_FILES:
        assert one(resources, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
