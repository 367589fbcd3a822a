"""Kubernetes manifests, offline.

- Built-in kinds are validated by kubernetes-validate (PyPI), which bundles the Kubernetes
  OpenAPI schemas, in strict mode (unknown fields are errors).
- Custom resources (KEDA ScaledObject, Prometheus Operator ServiceMonitor and PrometheusRule)
  have no schema there. Their schemas come from cloudcoil's model packages on PyPI
  (cloudcoil-models-keda 2.16.1, cloudcoil-models-prometheus-operator 0.80.1), pydantic models
  generated from those projects' CRD OpenAPI schemas. The models' JSON Schema is made strict the
  same way (additionalProperties: false on every object with declared properties) and applied
  with jsonschema; the model is also validated by pydantic itself (types, required fields).
- Negative controls show each validator rejects a misspelt field.
- Then the manifests are checked against each other and config/walletguard.toml.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import CONFIG_FILE, K8S, RULES_FILE, config_topics, http_port

K8S_VERSIONS = ["1.30.0", "1.37.0"]
BUILTIN = {"Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
CUSTOM = {"ScaledObject", "ServiceMonitor", "PrometheusRule"}


def crd_model(kind: str):
    from cloudcoil.models.keda import v1alpha1 as keda
    from cloudcoil.models.prometheus_operator import v1 as monitoring

    return {
        ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
        ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
    }[kind]


def strict(schema):
    """additionalProperties: false on every object schema that declares its properties."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            strict(v)
    elif isinstance(schema, list):
        for v in schema:
            strict(v)
    return schema


def crd_errors(doc: dict) -> list[str]:
    model = crd_model((doc["apiVersion"], doc["kind"]))
    schema = strict(model.model_json_schema(by_alias=True, mode="validation"))
    v = jsonschema.Draft202012Validator(schema)
    errs = [f'{"/".join(map(str, e.absolute_path))}: {e.message}' for e in v.iter_errors(doc)]
    try:
        model.model_validate(doc)
    except Exception as e:  # pydantic.ValidationError
        errs.append(str(e))
    return errs


def builtin_errors(doc: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f'{"/".join(map(str, e.path))}: {e.message}']
    return []


def clean(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "__file__"}


def test_kustomization_lists_every_manifest(k8s_docs):
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files
    kinds = {key.split("/")[0] for key in k8s_docs}
    assert kinds == BUILTIN | CUSTOM


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_kinds_validate(k8s_docs, version):
    checked = 0
    for key, doc in k8s_docs.items():
        if doc["kind"] in BUILTIN:
            assert builtin_errors(clean(doc), version) == [], key
            checked += 1
    assert checked == len(BUILTIN)


def test_custom_resources_validate(k8s_docs):
    checked = 0
    for key, doc in k8s_docs.items():
        if doc["kind"] in CUSTOM:
            assert crd_errors(clean(doc)) == [], key
            checked += 1
    assert checked == len(CUSTOM)


def test_validators_reject_misspelt_fields(k8s_docs):
    dep = copy.deepcopy(clean(k8s_docs["Deployment/walletguard"]))
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpget"] = {"path": "/readyz"}
    assert builtin_errors(dep, K8S_VERSIONS[-1])
    so = copy.deepcopy(clean(k8s_docs["ScaledObject/walletguard"]))
    so["spec"]["maxReplicas"] = 12
    assert crd_errors(so)
    so = copy.deepcopy(clean(k8s_docs["ScaledObject/walletguard"]))
    so["spec"]["maxReplicaCount"] = "twelve"
    assert crd_errors(so)
    sm = copy.deepcopy(clean(k8s_docs["ServiceMonitor/walletguard"]))
    sm["spec"]["endpoints"][0]["intervall"] = "15s"
    assert crd_errors(sm)
    pr = copy.deepcopy(clean(k8s_docs["PrometheusRule/walletguard"]))
    del pr["spec"]["groups"][0]["name"]
    assert crd_errors(pr)


def test_generated_manifests_are_in_sync():
    r = subprocess.run([sys.executable, str(K8S / "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cm = yaml.safe_load((K8S / "configmap.yaml").read_text())
    assert cm["data"]["walletguard.toml"] == CONFIG_FILE.read_text()
    pr = yaml.safe_load((K8S / "prometheusrule.yaml").read_text())
    assert pr["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]


def test_deployment_semantics(k8s_docs, config):
    dep = k8s_docs["Deployment/walletguard"]
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    (c,) = spec["containers"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # KEDA owns the replica count.
    assert "replicas" not in dep["spec"]
    # The drain on SIGTERM gets its whole budget, plus walletguard's 10 s backstop.
    assert spec["terminationGracePeriodSeconds"] > config["kafka"]["shutdown_timeout_s"] + 10
    port = http_port(config)
    (p,) = c["ports"]
    assert p["containerPort"] == port
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": p["name"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": p["name"]}
    env = {e["name"]: e for e in c["env"]}
    assert env["WALLETGUARD_HTTP__LISTEN"]["value"] == f"0.0.0.0:{port}"
    assert env["WALLETGUARD_KAFKA__INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    # Non-root, as the image.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    # The ConfigMap is mounted where --config reads it.
    path = c["args"][c["args"].index("--config") + 1]
    (vm,) = c["volumeMounts"]
    assert path == vm["mountPath"].rstrip("/") + "/walletguard.toml"
    (vol,) = [v for v in spec["volumes"] if v["name"] == vm["name"]]
    cm = k8s_docs[f'ConfigMap/{vol["configMap"]["name"]}']
    assert "walletguard.toml" in cm["data"]


def test_service_monitor_pdb_select_the_pods(k8s_docs, config):
    labels = k8s_docs["Deployment/walletguard"]["spec"]["template"]["metadata"]["labels"]
    svc = k8s_docs["Service/walletguard"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (sp,) = svc["spec"]["ports"]
    assert sp["port"] == http_port(config) and sp["targetPort"] == "http"
    sm = k8s_docs["ServiceMonitor/walletguard"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == sp["name"] and ep["path"] == "/metrics"
    # The rules select job="walletguard": the job label is the Service's jobLabel label value.
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "walletguard"
    pdb = k8s_docs["PodDisruptionBudget/walletguard"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_scaled_object_is_capped_at_input_partitions(k8s_docs, config):
    so = k8s_docs["ScaledObject/walletguard"]["spec"]
    k = config["kafka"]
    assert so["scaleTargetRef"]["kind"] == "Deployment" and so["scaleTargetRef"]["name"] == "walletguard"
    # Partitions bound useful instances: one owner per input partition.
    assert so["maxReplicaCount"] == k["partitions"]
    assert 1 <= so["minReplicaCount"] <= so["maxReplicaCount"]
    (t,) = so["triggers"]
    assert t["type"] == "kafka"
    m = t["metadata"]
    assert m["consumerGroup"] == k["group_id"]
    inputs = [n for n, r in config_topics(config).items() if r == "input"]
    assert m["topic"] in inputs
    assert int(m["lagThreshold"]) > 0
    assert m["allowIdleConsumers"] == "false"
    dep_env = {e["name"]: e.get("value") for e in k8s_docs["Deployment/walletguard"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert m["bootstrapServers"] == dep_env["WALLETGUARD_KAFKA__BROKERS"]
