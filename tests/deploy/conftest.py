"""Shared paths and parsed files for the deploy/ checks (run by tests/deploy.sh)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONFIG_FILE = ROOT / "config" / "walletguard.toml"
RULES_FILE = DEPLOY / "prometheus" / "rules" / "walletguard.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "walletguard.json"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
# The wire contract lives beside the repository (shared/ next to the clone), as the README says.
CONTRACT = Path(os.environ.get("WG_DEPLOY_CONTRACT", ROOT.parent / "shared" / "CONTRACT.md"))

sys.path.insert(0, str(Path(__file__).resolve().parent))


def tool(name: str) -> str:
    """A command from PATH, or the venv running pytest; fails the test when missing."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} not found: run tests/deploy.sh, which installs it")
    return found


@pytest.fixture(scope="session")
def config() -> dict:
    return tomllib.loads(CONFIG_FILE.read_text())


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="session")
def rules() -> dict:
    return yaml.safe_load(RULES_FILE.read_text())


@pytest.fixture(scope="session")
def k8s_docs() -> dict[str, dict]:
    """Every manifest under deploy/k8s, by "Kind/name"."""
    docs = {}
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                docs[f'{d["kind"]}/{d["metadata"]["name"]}'] = d | {"__file__": f.name}
    return docs


def readme_wire_topics() -> set[str]:
    """Topics the README's "Wire format" section (the project's mirror of the contract) names."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Wire format", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"\(topic `([^`]+)`", section))


def contract_topics() -> set[str]:
    """Topics of the wire contract: its section headings "(topic `name`)" when the contract is
    beside the clone (../shared/CONTRACT.md), which must then agree with the README's mirror;
    the README's mirror alone otherwise (a clone on its own, as CI may run it)."""
    mirror = readme_wire_topics()
    if not mirror:
        pytest.fail("README.md's Wire format section names no topic")
    if CONTRACT.exists():
        contract = set(re.findall(r"^#+ .*\(topic `([^`]+)`", CONTRACT.read_text(), re.MULTILINE))
        assert contract == mirror, f"README wire format topics {mirror} differ from the contract's {contract}"
        return contract
    return mirror


def config_topics(cfg: dict) -> dict[str, str]:
    """Every topic of the config, by role: input, changelog, output."""
    k = cfg["kafka"]
    roles = {t: "input" for t in k["input_topics"]}
    roles[k["changelog_topic"]] = "changelog"
    roles[k.get("lists_topic", "walletguard.lists")] = "lists"
    for t in [k["alerts_topic"], k["commands_topic"], k["dlq_topic"], k["decisions_topic"]]:
        if t:
            roles[t] = "output"
    for s in cfg.get("subscriptions", []):
        roles[s["topic"]] = "output"
    return roles


def http_port(cfg: dict) -> int:
    return int(cfg["http"]["listen"].rsplit(":", 1)[1])
