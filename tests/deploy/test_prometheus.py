"""Prometheus config and rules: promtool's own checks, runbooks on every alert, and promtool
unit tests that feed synthetic series to the alerts and check which fire (and which do not)."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import PROM_CONFIG, RULES_FILE, tool

REQUIRED_ALERTS = {
    # issue 5's list → the alert that covers it
    "consumer lag high and growing": "WalletguardConsumerLagHigh",
    "no events processed": "WalletguardNoEventsProcessed",
    "DLQ rate": "WalletguardDeadLetterRateHigh",
    "freeze-rate spike": "WalletguardFreezeRateSpike",
    "restore taking too long": "WalletguardRestoreSlow",
    "transaction aborts": "WalletguardTransactionAborts",
}


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules(rules):
    r = run([tool("promtool"), "check", "rules", str(RULES_FILE)])
    assert r.returncode == 0, r.stdout + r.stderr
    n = sum(len(g["rules"]) for g in rules["groups"])
    assert f"SUCCESS: {n} rules found" in r.stdout, r.stdout


def test_promtool_check_config():
    # Also checks the rule files the config names (rules/*.yml, relative to it).
    r = run([tool("promtool"), "check", "config", str(PROM_CONFIG)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 1 rule files found" in r.stdout, r.stdout


def test_prometheus_config_scrapes_both_compose_instances(compose):
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    # The alert rules select job="walletguard"; in Kubernetes the ServiceMonitor's job label is
    # the Service's app.kubernetes.io/name, also "walletguard" (test_k8s checks that side).
    assert "walletguard" in jobs
    targets = {t for sc in jobs["walletguard"]["static_configs"] for t in sc["targets"]}
    instances = {
        f'{name}:{svc["environment"]["WALLETGUARD_HTTP__LISTEN"].rsplit(":", 1)[1]}'
        for name, svc in compose["services"].items()
        if name.startswith("walletguard-")
    }
    assert len(instances) == 2
    assert targets == instances


def test_every_alert_has_severity_and_runbook(rules):
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)), "duplicate alert names"
    for want, name in REQUIRED_ALERTS.items():
        assert name in names, f"no alert for {want}"
    for a in alerts:
        assert a["labels"]["severity"] in {"critical", "warning"}, a["alert"]
        ann = a["annotations"]
        for key in ("summary", "description", "runbook"):
            assert ann.get(key, "").strip(), f'{a["alert"]}: no {key}'
        # A runbook says what to do, not only what happened.
        assert len(ann["runbook"]) >= 150, f'{a["alert"]}: runbook too short'


def test_recording_rule_names_follow_convention(rules):
    for g in rules["groups"]:
        for r in g["rules"]:
            if "record" in r:
                level, _, ops = r["record"].partition(":")
                assert level == "walletguard" and ops.count(":") == 1, r["record"]


# --- promtool unit tests ------------------------------------------------------------------------
# Each case: input series (promtool's expanding notation, one sample a minute), the time to
# evaluate at, the alert, and the alerts expected then (labels and rendered summary and
# description; the runbook is copied from the rules file, which has no templates in it).

SERIES = "walletguard_{}{{job=\"walletguard\",instance=\"wg-1:9898\"{}}}"


def series(metric: str, labels: str = "") -> str:
    return SERIES.format(metric, "," + labels if labels else "")


CASES = [
    (
        "lag high and growing fires",
        # Flat for the last minutes before 30m: the alert reads a recording rule that promtool
        # may evaluate before or after it in the same step, so the value must not depend on it.
        [(series("consumer_lag_messages", 'topic="wallet.events",partition="0"'), "60000+1000x28 88000x12")],
        "30m",
        "WalletguardConsumerLagHigh",
        [({"severity": "warning", "topic": "wallet.events"},
          "walletguard is falling behind on wallet.events",
          "Consumer lag on wallet.events is 88k messages and has grown for 10 minutes: decisions, freezes and step-ups reach downstream late.")],
    ),
    (
        "lag high but shrinking does not fire",
        [(series("consumer_lag_messages", 'topic="wallet.events",partition="0"'), "200000-1000x40")],
        "30m",
        "WalletguardConsumerLagHigh",
        [],
    ),
    (
        "two instances exporting the same partition's lag count once",
        [(series("consumer_lag_messages", 'topic="wallet.events",partition="0"'), "30000x40"),
         (SERIES.format("consumer_lag_messages", ',topic="wallet.events",partition="0"').replace("wg-1", "wg-2"), "30000+100x40")],
        "30m",
        "WalletguardConsumerLagHigh",
        [],
    ),
    (
        "nothing consumed while partitions are assigned fires",
        [(series("events_total", 'type="payment"'), "5000x40"),
         (series("invalid_events_total", 'reason="malformed_json"'), "3x40"),
         (series("assigned_partitions"), "6x40")],
        "30m",
        "WalletguardNoEventsProcessed",
        [({"severity": "critical"},
          "walletguard has processed no events for 20 minutes",
          "Partitions are assigned but no valid or invalid event has been consumed: wallet activity is not being screened.")],
    ),
    (
        "steady consumption does not fire",
        [(series("events_total", 'type="payment"'), "0+6000x40"),
         (series("invalid_events_total", 'reason="malformed_json"'), "0x40"),
         (series("assigned_partitions"), "6x40")],
        "30m",
        "WalletguardNoEventsProcessed",
        [],
    ),
    (
        "5% dead letters fires",
        [(series("events_total", 'type="payment"'), "0+5700x40"),
         (series("invalid_events_total", 'reason="missing_field"'), "0+300x40")],
        "30m",
        "WalletguardDeadLetterRateHigh",
        [({"severity": "warning"},
          "5% of inputs go to the dead-letter topic",
          "More than 1% of input messages are invalid and are written to the DLQ instead of being scored.")],
    ),
    (
        "freeze share jumping from 0.1% to ~4.8% after a day fires",
        [(series("decisions_total", 'action="allow"'), "0+1000x1500"),
         (series("decisions_total", 'action="freeze"'), "0+1x1440 1490+50x60")],
        "1d40m",
        "WalletguardFreezeRateSpike",
        [({"severity": "critical", "action": "freeze"},
          "Freeze rate is 4.762% of decisions, over 3x its daily average",
          "walletguard is freezing far more accounts than usual. A misconfigured threshold or weight freezes good users; a real attack wave looks the same here.")],
    ),
    (
        "a steady 0.3% freeze share does not fire",
        [(series("decisions_total", 'action="allow"'), "0+1000x1500"),
         (series("decisions_total", 'action="freeze"'), "0+3x1500")],
        "1d40m",
        "WalletguardFreezeRateSpike",
        [],
    ),
    (
        "restoring for over 3 minutes fires",
        [(series("restoring_partitions"), "0 0 2x10")],
        "10m",
        "WalletguardRestoreSlow",
        [({"severity": "warning", "job": "walletguard", "instance": "wg-1:9898"},
          "wg-1:9898 has been restoring state for over 3 minutes",
          "Partitions of wg-1:9898 are still being restored from the changelog; their events wait (/readyz is 503). At kafka.restore_timeout_s (300 s) the instance exits.")],
    ),
    (
        "a one-minute restore does not fire",
        [(series("restoring_partitions"), "0 2 0x10")],
        "10m",
        "WalletguardRestoreSlow",
        [],
    ),
    (
        "a partition not consumed for over 2 minutes fires",
        [(series("unfetched_partitions"), "0 1x10")],
        "5m",
        "WalletguardPartitionsUnfetched",
        [({"severity": "critical", "job": "walletguard", "instance": "wg-1:9898"},
          "wg-1:9898 holds 1 partitions it is not consuming",
          "Partitions are assigned to wg-1:9898 but nothing is fetched from them while records wait, or no task consumes them (/readyz is 503). Their users are not being scored.")],
    ),
    (
        "a partition repaired within a minute does not fire",
        [(series("unfetched_partitions"), "0 1 0x10")],
        "5m",
        "WalletguardPartitionsUnfetched",
        [],
    ),
    (
        "a stall of the process fires",
        [(series("stalls_total"), "0x5 1x10")],
        "10m",
        "WalletguardProcessStalled",
        [({"severity": "warning", "job": "walletguard", "instance": "wg-1:9898"},
          "wg-1:9898 stalled, or refused writes for partitions it no longer owned",
          "The whole process stood still for half the session timeout or more (walletguard_stalls_total), fenced writes of partitions it had lost (walletguard_fenced_total), or repaired many partitions (walletguard_partition_repairs_total). Each stall makes it give up its partitions and restore them again.")],
    ),
    (
        "no stall does not fire",
        [(series("stalls_total"), "0x15")],
        "10m",
        "WalletguardProcessStalled",
        [],
    ),
    (
        "repeated transaction aborts fire",
        [(series("transactions_total", 'outcome="aborted"'), "0x5 1+1x10"),
         (series("transactions_total", 'outcome="committed"'), "0+60x15")],
        "15m",
        "WalletguardTransactionAborts",
        [({"severity": "warning", "job": "walletguard", "instance": "wg-1:9898"},
          "wg-1:9898 aborted 10 transactions in 15 minutes",
          "With delivery = exactly_once, an aborted transaction rewinds the instance to its last commit and reprocesses; repeated aborts stall it.")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_alert_unit(case, rules, tmp_path):
    _, inputs, at, alert, expected = case
    runbooks = {r["alert"]: r["annotations"]["runbook"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert "{{" not in runbooks[alert]
    test = {
        "rule_files": [str(RULES_FILE)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in inputs],
            "alert_rule_test": [{
                "eval_time": at,
                "alertname": alert,
                "exp_alerts": [
                    {"exp_labels": labels,
                     "exp_annotations": {"summary": summary, "description": desc, "runbook": runbooks[alert]}}
                    for labels, summary, desc in expected
                ],
            }],
        }],
    }
    f = tmp_path / "test.yml"
    f.write_text(yaml.safe_dump(test, sort_keys=False, width=1000))
    r = run([tool("promtool"), "test", "rules", str(f)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
