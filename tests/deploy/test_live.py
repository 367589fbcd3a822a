"""A real Prometheus server on 127.0.0.1 scrapes a running `walletguard demo` (the whole service on
an embedded Kafka-protocol broker, no Kafka needed) every second and evaluates the rules file
every second. Then every PromQL expression of the rules and of the dashboard is evaluated
through Prometheus' HTTP API: each must succeed, and each of its signals (promql.signals: the
expression itself, or for an alert the vectors its thresholds are compared with) must return
at least one series. A renamed or dropped metric, label or recording rule fails here.

Needs WG_DEPLOY_BIN (tests/deploy.sh builds it) and the prometheus server (Debian's
`prometheus` package, which tests/deploy.sh installs).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import DASHBOARD, ROOT, RULES_FILE, tool
from promql import METRIC_NAME, dashboard_expressions, metric_family, rule_expressions, signals

SCRAPES_BEFORE_CHECKING = 15
SETTLE_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@dataclass
class Live:
    wg: str  # host:port of walletguard's HTTP
    prom: str  # base URL of Prometheus
    demo: subprocess.Popen
    demo_out: list[str] = field(default_factory=list)

    def query(self, expr: str) -> dict:
        status, body = get(f"{self.prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise AssertionError(f"query failed ({status}): {expr}: {doc.get('error')}")
        return doc["data"]

    def series(self, expr: str) -> int:
        data = self.query(expr)
        return len(data["result"]) if data["resultType"] in ("vector", "matrix") else 1


def walletguard_bin() -> str:
    b = os.environ.get("WG_DEPLOY_BIN") or str(ROOT / "target" / "debug" / "walletguard")
    if not Path(b).is_file():
        pytest.fail(f"walletguard binary {b} missing: run tests/deploy.sh (or set WG_DEPLOY_BIN)")
    return b


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    want = free_port()
    # Every WALLETGUARD_* variable is a config override (or an error): pass only ours.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETGUARD_")}
    env |= {"WALLETGUARD_HTTP__LISTEN": f"127.0.0.1:{want}", "RUST_LOG": "warn"}
    demo = subprocess.Popen(
        # 15 minutes of traffic at 1,500 events/s (the simulated month goes on into new ones),
        # far longer than the checks take, so the target stays up (a finished demo exits, and
        # its gauges go stale).
        [walletguard_bin(), "demo", "--rate", "1500", "--duration", "900", "--partitions", "6"],
        env=env, stdout=subprocess.PIPE, stderr=open(tmp / "demo.err", "w"), text=True,
    )
    out: list[str] = []
    threading.Thread(target=lambda: [out.append(line) for line in demo.stdout], daemon=True).start()
    prom = None
    try:
        addr = None
        deadline = time.time() + 120
        while addr is None and time.time() < deadline and demo.poll() is None:
            for line in list(out):
                m = re.search(r"metrics:\s+curl -s http://([0-9.]+:\d+)/metrics", line)
                if m:
                    addr = m.group(1)
            time.sleep(0.2)
        assert addr, f"demo printed no metrics address: {''.join(out)[:2000]} {(tmp / 'demo.err').read_text()[:2000]}"
        assert addr.startswith("127.0.0.1:")

        prom_port = free_port()
        cfg = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES_FILE)],
            "scrape_configs": [{"job_name": "walletguard", "static_configs": [{"targets": [addr]}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        prom = subprocess.Popen(
            [tool("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}",
             "--log.level=warn"],
            stdout=open(tmp / "prom.out", "w"), stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{prom_port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if get(f"{base}/-/ready", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert prom.poll() is None, (tmp / "prom.out").read_text()
            time.sleep(0.5)
        lv = Live(wg=addr, prom=base, demo=demo, demo_out=out)
        # Let Prometheus scrape and evaluate a while, so rate() windows hold several samples.
        deadline = time.time() + 90
        while time.time() < deadline:
            if lv.query(f'count_over_time(up{{job="walletguard"}}[5m]) >= {SCRAPES_BEFORE_CHECKING}')["result"]:
                break
            time.sleep(1)
        else:
            pytest.fail("Prometheus did not scrape the demo: " + (tmp / "prom.out").read_text()[-2000:])
        yield lv
    finally:
        if prom:
            prom.terminate()
            prom.wait(timeout=30)
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()


def all_expressions() -> list[tuple[str, str]]:
    exprs = [(f"{kind} {name}", e) for kind, name, e in rule_expressions(RULES_FILE)]
    exprs += [(f"dashboard: {where}", e) for where, e in dashboard_expressions(DASHBOARD)]
    return exprs


def test_demo_target_is_up_and_healthy(live):
    assert live.query('up{job="walletguard"} == 1')["result"]
    host, port = live.wg.split(":")
    assert get(f"http://{live.wg}/healthz")[0] == 200
    deadline = time.time() + 60
    while get(f"http://{live.wg}/readyz")[0] != 200:
        assert time.time() < deadline, "/readyz never answered 200"
        time.sleep(1)
    # The image's HEALTHCHECK script, pointed at the demo the way the container points it at
    # walletguard (WALLETGUARD_HTTP__LISTEN), and at a port where nothing listens.
    script = ROOT / "deploy" / "healthcheck.sh"
    ok = subprocess.run(["bash", str(script)], env={"WALLETGUARD_HTTP__LISTEN": f"0.0.0.0:{port}", "PATH": os.environ["PATH"]},
                        capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    closed = subprocess.run(["bash", str(script)], env={"WALLETGUARD_HTTP__LISTEN": f"0.0.0.0:{free_port()}", "PATH": os.environ["PATH"]},
                            capture_output=True, timeout=30)
    assert closed.returncode != 0


def test_every_rule_and_dashboard_expression_returns_series(live, capsys):
    exprs = all_expressions()
    checks = [(where, e, s) for where, e in exprs for s in signals(e)]
    deadline = time.time() + SETTLE_TIMEOUT_S
    while True:
        empty = []
        assert live.demo.poll() is None, "the demo exited during the checks"
        for where, e, s in checks:
            live.query(e)  # the whole expression is valid and evaluates
            if live.series(s) == 0:
                empty.append(f"{where}: {s}")
        if not empty or time.time() > deadline:
            break
        time.sleep(3)
    with capsys.disabled():
        n_rules = sum(1 for w, _ in exprs if not w.startswith("dashboard"))
        print(f"\n  live PromQL check: {len(exprs)} expressions ({n_rules} rules, "
              f"{len(exprs) - n_rules} dashboard queries), {len(checks)} signals, {len(empty)} empty")
    assert not empty, "expressions returning no series:\n" + "\n".join(empty)


def test_rules_evaluate_without_errors(live):
    status, body = get(f"{live.prom}/api/v1/rules")
    groups = json.loads(body)["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    want = sum(len(g["rules"]) for g in yaml.safe_load(RULES_FILE.read_text())["groups"])
    assert len(rules) == want
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad


def test_rules_and_dashboard_use_every_exported_metric(live):
    """Both directions: every name they use is exported, every exported family is watched."""
    _, text = get(f"http://{live.wg}/metrics")
    exported = {metric_family(m) for m in re.findall(r"^(walletguard_\w+)[{ ]", text, re.MULTILINE)}
    assert exported
    used = {metric_family(n) for _, e in all_expressions() for n in METRIC_NAME.findall(e)}
    assert used - exported == set(), "used but not exported"
    assert exported - used == set(), "exported but on no dashboard panel or rule"
