"""The compose stack, without Docker: the file parses, its services, ports, mounts and topics
agree with config/walletguard.toml and the wire contract, and its topic-init script, run
against a stand-in for kafka-topics.sh, creates exactly those topics."""

from __future__ import annotations

import os
import re
import subprocess
import textwrap

import yaml
from conftest import COMPOSE, DEPLOY, ROOT, config_topics, contract_topics, http_port

WG = ["walletguard-1", "walletguard-2"]


def topic_lines(compose) -> list[tuple[str, int, dict]]:
    """kafka-init's TOPICS: (name, partitions, configs)."""
    out = []
    for line in compose["services"]["kafka-init"]["environment"]["TOPICS"].splitlines():
        if not line.strip():
            continue
        name, parts, *rest = line.split()
        cfgs = dict(kv.split("=", 1) for kv in rest[0].split(",")) if rest else {}
        out.append((name, int(parts), cfgs))
    return out


def test_services(compose):
    assert set(compose["services"]) == {
        "kafka", "kafka-init", "walletguard-1", "walletguard-2", "simulator", "prometheus", "grafana"
    }
    # The official Apache Kafka image, in KRaft mode (broker and controller, no ZooKeeper).
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    # Only the optional traffic generator sits behind a profile: `docker compose up` is enough.
    assert [n for n, s in compose["services"].items() if s.get("profiles")] == ["simulator"]


def test_ports_are_loopback_only(compose):
    for name, svc in compose["services"].items():
        for p in svc.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), f"{name} publishes {p} beyond loopback"


def test_walletguard_instances_agree_with_config(compose, config):
    port = http_port(config)
    k = config["kafka"]
    env_kafka = compose["services"]["kafka"]["environment"]
    advertised = dict(re.findall(r"(\w+)://([^,]+)", env_kafka["KAFKA_ADVERTISED_LISTENERS"]))
    host_ports = set()
    instance_ids = set()
    for name in WG:
        svc = compose["services"][name]
        env = svc["environment"]
        # Same group (not overridden), distinct instance ids.
        assert not any(v.startswith("WALLETGUARD_KAFKA__GROUP_ID") for v in env)
        instance_ids.add(env["WALLETGUARD_KAFKA__INSTANCE_ID"])
        # The broker address is Kafka's advertised in-network listener.
        assert env["WALLETGUARD_KAFKA__BROKERS"] == advertised[env_kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]]
        # HTTP on every interface of the container, on the config's port.
        assert env["WALLETGUARD_HTTP__LISTEN"] == f"0.0.0.0:{port}"
        (pub,) = svc["ports"]
        _, host_port, container_port = str(pub).split(":")
        assert int(container_port) == port
        host_ports.add(host_port)
        # The config file is mounted where the command reads it.
        cmd = svc["command"]
        assert cmd[0] == "run"
        path = cmd[cmd.index("--config") + 1]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert (COMPOSE.parent / mounts[path]).resolve() == ROOT / "config" / "walletguard.toml"
        # Enough time to drain on `docker compose stop`: more than kafka.shutdown_timeout_s plus
        # walletguard's 10 s backstop.
        grace = int(svc["stop_grace_period"].rstrip("s"))
        assert grace > k["shutdown_timeout_s"] + 10
        assert svc["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE.parent / svc["build"]["context"]).resolve() == ROOT
    assert len(instance_ids) == 2 and len(host_ports) == 2


def test_topics_match_config_and_contract(compose, config):
    k = config["kafka"]
    lines = topic_lines(compose)
    names = [n for n, _, _ in lines]
    assert len(names) == len(set(names))
    roles = config_topics(config)
    assert set(names) == set(roles), "kafka-init must create exactly the config's topics"
    contract = contract_topics()
    assert contract, "no topics found in the contract"
    assert contract <= set(names), f"contract topics missing: {contract - set(names)}"
    parts = {n: p for n, p, _ in lines}
    inputs = [t for t, r in roles.items() if r == "input"]
    for t in inputs:
        assert parts[t] == k["partitions"]
    for n, p, cfgs in lines:
        if roles[n] == "changelog":
            # Co-partitioned with the input, compacted, with the config's compaction lag.
            assert p == parts[inputs[0]]
            assert cfgs == {
                "cleanup.policy": "compact",
                "min.compaction.lag.ms": str(k["changelog_min_compaction_lag_ms"]),
            }
        elif roles[n] == "lists":
            # Compacted: every instance reads it in full, the latest entry per key.
            assert cfgs == {"cleanup.policy": "compact"}
            assert p == k["partitions"]
        else:
            assert cfgs == {}, f"{n} should use the broker's defaults"
            assert p == k["partitions"]


def test_kafka_init_script_creates_and_checks_topics(compose, tmp_path):
    """Runs deploy/kafka/create-topics.sh with compose's environment against a stand-in
    kafka-topics.sh that records its arguments and describes what it created."""
    init = compose["services"]["kafka-init"]
    script_host, script_ctr = init["volumes"][0].split(":")[:2]
    assert init["entrypoint"] == ["/bin/bash", script_ctr]
    script = (COMPOSE.parent / script_host).resolve()
    assert script == DEPLOY / "kafka" / "create-topics.sh"
    log = tmp_path / "calls"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        echo "$*" >> {log}
        if [[ " $* " == *" --describe "* ]]; then
          topic=$(sed -n 's/.*--topic \\([^ ]*\\).*/\\1/p' <<< "$*")
          parts=$(grep -- "--topic $topic " {log} | grep -- --create | sed -n 's/.*--partitions \\([0-9]*\\).*/\\1/p' | head -n1)
          [ -n "${{SHRINK:-}}" ] && [ "$topic" = "$SHRINK" ] && parts=1
          printf 'Topic: %s\\tTopicId: x\\tPartitionCount: %s\\tReplicationFactor: 1\\n' "$topic" "$parts"
        fi
        """))
    stub.chmod(0o755)
    env = {k: str(v) for k, v in init["environment"].items()} | {
        "KAFKA_TOPICS": str(stub), "PATH": os.environ["PATH"]
    }
    r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = log.read_text().splitlines()
    created = {}
    for c in calls:
        if "--create" in c:
            a = c.split()
            assert a[a.index("--bootstrap-server") + 1] == env["BOOTSTRAP"]
            assert "--if-not-exists" in a
            cfgs = dict(a[i + 1].split("=", 1) for i, x in enumerate(a) if x == "--config")
            created[a[a.index("--topic") + 1]] = (int(a[a.index("--partitions") + 1]), cfgs)
    assert created == {n: (p, c) for n, p, c in topic_lines(compose)}
    assert sum("--describe" in c for c in calls) == len(created)
    # A topic that exists with the wrong partition count fails the init job.
    log.write_text("")
    r = subprocess.run(["bash", str(script)], env=env | {"SHRINK": "walletguard.profiles"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "walletguard.profiles has 1 partitions" in r.stderr


def test_prometheus_and_grafana_wiring(compose):
    prom = compose["services"]["prometheus"]
    mounts = {v.split(":")[1]: (COMPOSE.parent / v.split(":")[0]).resolve() for v in prom["volumes"] if v.startswith(".")}
    assert mounts["/etc/prometheus/prometheus.yml"] == DEPLOY / "prometheus" / "prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == DEPLOY / "prometheus" / "rules"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    graf = compose["services"]["grafana"]
    gm = {v.split(":")[1]: (COMPOSE.parent / v.split(":")[0]).resolve() for v in graf["volumes"] if v.startswith(".")}
    assert gm["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())["datasources"][0]
    # The datasource points at the prometheus service's container port.
    assert ds["url"] == "http://prometheus:" + prom["ports"][0].rsplit(":", 1)[1]
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/walletguard.yaml").read_text())["providers"][0]
    dash_dir = prov["options"]["path"]
    assert gm[dash_dir] == DEPLOY / "grafana" / "dashboards"
    home = graf["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dash_dir + "/") and (DEPLOY / "grafana" / "dashboards" / home.rsplit("/", 1)[1]).exists()
