"""The Dockerfile (hadolint, and agreement with config and compose/k8s) and the dashboard's
structure. What the dashboard's queries return is test_live's job."""

from __future__ import annotations

import json
import re
import subprocess

import yaml
from conftest import DASHBOARD, DEPLOY, ROOT, RULES_FILE, http_port, tool
from promql import RECORDED_NAME, dashboard_expressions, dashboard_panels

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint():
    r = subprocess.run([tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_is_multistage_nonroot_with_healthcheck(config):
    ins = instructions()
    froms = [a for i, a in ins if i == "FROM"]
    assert len(froms) >= 2 and " AS builder" in froms[0]
    runtime_start = max(n for n, (i, _) in enumerate(ins) if i == "FROM")
    runtime = ins[runtime_start:]
    # The runtime stage copies the binary from the builder; it does not compile.
    assert any(i == "COPY" and "--from=builder" in a for i, a in runtime)
    assert not any("cargo" in a for i, a in runtime)
    (user,) = [a for i, a in runtime if i == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    (hc,) = [a for i, a in runtime if i == "HEALTHCHECK"]
    script = json.loads(hc.split("CMD", 1)[1].strip())[0]
    copied = {a.split()[-1]: a.split()[-2] for i, a in runtime if i == "COPY" and "--from" not in a}
    assert copied[script] == "deploy/healthcheck.sh"
    assert "/healthz" in (ROOT / "deploy/healthcheck.sh").read_text()
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for i, a in runtime if i == "ENV")))
    port = http_port(config)
    assert env["WALLETGUARD_HTTP__LISTEN"] == f"0.0.0.0:{port}"
    assert [a for i, a in runtime if i == "EXPOSE"] == [str(port)]
    cmd = json.loads([a for i, a in runtime if i == "CMD"][0])
    path = cmd[cmd.index("--config") + 1]
    assert env["WALLETGUARD_CONFIG"] == path
    assert copied[path] == "config/walletguard.toml"
    # compose and Kubernetes mount their config at the same path.
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["services"]["walletguard-1"]["command"] == cmd
    dep = yaml.safe_load((DEPLOY / "k8s/deployment.yaml").read_text())
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"] == cmd
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_dockerignore_keeps_what_the_build_copies():
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*", "exclude everything, then re-include what the build needs"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for i, a in instructions():
        if i == "COPY" and "--from" not in a:
            for src in a.split()[:-1]:
                parts = src.rstrip("/").split("/")
                prefixes = {"/".join(parts[: n + 1]) for n in range(len(parts))}
                assert prefixes & allowed, f"{src} is excluded from the build context"
                assert (ROOT / src).exists(), src


def test_dashboard_structure():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "walletguard"
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())["datasources"][0]
    panels = dashboard_panels(DASHBOARD)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert p["datasource"]["uid"] == ds["uid"], p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == ds["uid"]
            assert t["expr"].strip()
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
    # What issue 5 asks the dashboard to show, by panel title.
    titles = " | ".join(p["title"].lower() for p in panels)
    for want in ["events/s", "decisions/s by action", "alerts/s by severity", "alerts/s by reason",
                 "freeze", "latency", "lag per partition", "dead letter", "restore", "rebalances"]:
        assert want in titles, f"no panel for {want}"
    # No two panels overlap.
    cells = set()
    for p in doc["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))


def test_dashboard_uses_only_recorded_series_that_exist():
    rules = yaml.safe_load(RULES_FILE.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    used = {n for _, e in dashboard_expressions(DASHBOARD) for n in RECORDED_NAME.findall(e)}
    assert used, "the dashboard should read the recording rules"
    assert used <= recorded, used - recorded
