#!/usr/bin/env python3
"""Crash soak: `walletguard run` is killed at random moments, many times, while a stream of
events is produced into Kafka; afterwards every decision, and the set of freeze commands, must
equal those of one uninterrupted `walletguard replay` of the same file.

Driven by tests/soak.sh (which builds walletguard and installs tansu); runnable by hand:

    python3 tests/soak.py --wg target/release/walletguard --broker mock --kills 20

What it checks, each printed and each failing the run:
  missing    events of the stream that never got a decision;
  diverging  events with a decision (first or repeated) that differs from the replay's;
  extra      freeze_account command ids that the replay did not issue;
  lost       freeze_account command ids of the replay that never arrived.

Kill moments are random, 'min-gap' to 'max-gap' seconds after the previous restart, so they
land during restore, during a rebalance, between a changelog write and its offset commit, and
mid-batch. Some are a SIGTERM followed by a SIGKILL within a second: a kill during shutdown.
With --instances > 1 each kill hits one instance at random.

--outage S takes the broker away for S seconds mid-stream, then checks that the pipeline
resumes by itself and that /readyz and the metrics told the truth meanwhile. The mock broker
goes down (connections refused); tansu is frozen with SIGSTOP, a hung broker whose connections
stay open, and thawed with SIGCONT. Why not a tansu restart: its in-memory storage would come
back empty, which is a lost cluster, not an outage.
"""

import argparse
import collections
import gzip
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def log(msg):
    print(f"soak: {msg}", flush=True)


def free_port():
    """A free loopback port below the kernel's ephemeral range. Why not port 0: a port the
    kernel hands out as ephemeral is free now, but any outgoing connection (the instances'
    own to the broker) may take it before the process that should listen on it starts, and
    a restarted instance then fails with 'address in use'."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(1000):
        port = random.SystemRandom().randrange(10000, max(low, 10001))
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    sys.exit("soak: FAILED: no free port")


def wait_port(port, limit):
    end = time.time() + limit
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def http_get(url, timeout=2):
    """(status, body), or (None, '') when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        try:
            return e.code, e.read().decode()
        except Exception:
            return e.code, ""
    except Exception:
        return None, ""


def metric(body, name):
    """Sum of every sample of a metric in a Prometheus text body (None when absent)."""
    total, seen = 0.0, False
    for line in body.splitlines():
        if line.startswith(name) and (len(line) > len(name) and line[len(name)] in " {"):
            try:
                total += float(line.rsplit(" ", 1)[1])
                seen = True
            except ValueError:
                pass
    return total if seen else None


class Broker:
    """tansu (in-memory storage) or `walletguard mock-broker`, on loopback."""

    def __init__(self, kind, wg, work, topics):
        self.kind, self.wg, self.work, self.topics = kind, wg, work, topics
        self.proc = None
        self.addr = None

    def start(self):
        logf = open(os.path.join(self.work, f"{self.kind}.log"), "ab")
        if self.kind == "tansu":
            port = free_port()
            self.addr = f"127.0.0.1:{port}"
            self.proc = subprocess.Popen(
                ["tansu", "broker", "--storage-engine", "memory://tansu/",
                 "--listener-url", f"tcp://{self.addr}",
                 "--advertised-listener-url", f"tcp://{self.addr}"],
                stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                env={**os.environ, "RUST_LOG": os.environ.get("SOAK_TANSU_LOG", "warn")})
            if not wait_port(port, 30):
                sys.exit("soak: FAILED: tansu did not listen")
        else:
            args = [self.wg, "mock-broker"]
            for t, n in self.topics:
                args += ["--topic", f"{t}:{n}"]
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=logf,
                                         stdin=subprocess.DEVNULL, text=True)
            line = self.proc.stdout.readline().split()
            if len(line) != 2 or line[0] != "bootstrap":
                sys.exit(f"soak: FAILED: mock-broker printed {line}")
            self.addr = line[1]
        return self.addr

    def port(self):
        return int(self.addr.rsplit(":", 1)[1])

    def down(self):
        self.proc.send_signal(signal.SIGSTOP if self.kind == "tansu" else signal.SIGUSR1)

    def up(self):
        self.proc.send_signal(signal.SIGCONT if self.kind == "tansu" else signal.SIGUSR2)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Instance:
    """One `walletguard run` process, restarted after every kill."""

    def __init__(self, wg, work, name, base_cfg):
        self.wg, self.name = wg, name
        self.http = free_port()
        self.cfg = os.path.join(work, f"{name}.toml")
        with open(self.cfg, "w") as f:
            f.write(base_cfg.replace("@INSTANCE@", name).replace("@HTTP@", str(self.http)))
        self.logpath = os.path.join(work, f"{name}.log")
        self.proc = None
        self.starts = 0
        self.assign_waits = []  # seconds from a restart to its first assigned partition

    def start(self):
        self.proc = subprocess.Popen(
            [self.wg, "run", "--config", self.cfg, "--watch-interval-s", "0"],
            stdout=open(self.logpath, "ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        self.started_at = time.time()
        self.starts += 1
        self.assigned_seen = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pause(self):
        """SIGSTOP: a stalled VM or a throttled container; every thread stops."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def url(self, path):
        return f"http://127.0.0.1:{self.http}{path}"

    def watch_assignment(self):
        """Notes the time to the first assigned partition after the latest start."""
        if self.assigned_seen or not self.alive():
            return
        status, body = http_get(self.url("/metrics"), 1)
        if status == 200 and (metric(body, "walletguard_assigned_partitions") or 0) > 0:
            self.assigned_seen = True
            self.assign_waits.append(time.time() - self.started_at)

    def kill(self, during_shutdown=False):
        if not self.alive():
            return
        if during_shutdown:
            self.proc.send_signal(signal.SIGTERM)
            time.sleep(random.uniform(0.0, 1.0))
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def terminate(self, limit):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def parse_faults(spec):
    """'kill:2,pause' -> [('kill', 2.0), ('pause', 1.0)]."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, w = part.partition(":")
        if name not in ("kill", "pause", "leave", "freeze", "cut"):
            sys.exit(f"soak: unknown fault kind {name!r}")
        out.append((name, float(w) if w else 1.0))
    if not out:
        sys.exit("soak: no fault kinds")
    return out


class NetCut:
    """Drops one instance's packets to and from the broker's port while both keep running.

    Loopback traffic is matched by the instance's own socket ports (read from /proc), so the
    other instances and the test's own readers are untouched; new connections the instance
    opens meanwhile are caught by the owner match on its cgroup-less pid through a fresh
    listing every 0.2 s."""

    def __init__(self, port, pid):
        self.port, self.pid = port, pid
        self.rules = set()
        self.stop = False
        import threading
        self.thread = threading.Thread(target=self.run, daemon=True)

    def ports(self):
        """Local ports of the pid's TCP sockets connected to the broker port."""
        inodes = set()
        try:
            for fd in os.listdir(f"/proc/{self.pid}/fd"):
                try:
                    t = os.readlink(f"/proc/{self.pid}/fd/{fd}")
                except OSError:
                    continue
                if t.startswith("socket:["):
                    inodes.add(t[8:-1])
        except OSError:
            return set()
        out = set()
        for tab in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = open(tab).read().splitlines()[1:]
            except OSError:
                continue
            for l in lines:
                f = l.split()
                if len(f) > 9 and f[9] in inodes and int(f[2].rsplit(":", 1)[1], 16) == self.port:
                    out.add(int(f[1].rsplit(":", 1)[1], 16))
        return out

    def run(self):
        while not self.stop:
            for lp in self.ports() - self.rules:
                for rule in (["--sport", str(lp)], ["--dport", str(lp)]):
                    subprocess.run(["iptables", "-I", "INPUT", "-i", "lo", "-p", "tcp"] + rule
                                   + ["-j", "DROP"], check=False)
                self.rules.add(lp)
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        for lp in self.rules:
            for rule in (["--sport", str(lp)], ["--dport", str(lp)]):
                subprocess.run(["iptables", "-D", "INPUT", "-i", "lo", "-p", "tcp"] + rule
                               + ["-j", "DROP"], check=False)


def read_jsonl(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def consume(wg, broker, topic, idle=3):
    r = subprocess.run([wg, "consume", "--brokers", broker, "--topic", topic,
                        "--idle-secs", str(idle)], capture_output=True, text=True)
    if r.returncode != 0:
        log(f"consume {topic} failed: {r.stderr.strip()[-300:]}")
        return []
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def reference(wg, events, prefix, partitions):
    """One uninterrupted `replay` of `events`: (decisions by event id, freeze command ids).
    One state per input partition, routed like the producer's murmur2 keying: each partition
    learns its own population, as the service's partitions do."""
    dec, cmd = prefix + ".decisions", prefix + ".commands"
    subprocess.run([wg, "replay", "--input", events, "--decisions", dec,
                    "--commands", cmd, "--partitions", str(partitions)],
                   check=True, stdout=subprocess.DEVNULL)
    want = {}
    for d in read_jsonl(dec):
        want.setdefault(d["event_id"], []).append(d)
    freezes = {c["command_id"] for c in read_jsonl(cmd) if c["command"] == "freeze_account"}
    return want, freezes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wg", required=True, help="walletguard binary")
    ap.add_argument("--broker", choices=["tansu", "mock"], default="mock")
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--attack-rate", type=float, default=0.05)
    ap.add_argument("--events", help="use this events file instead of simulating one")
    ap.add_argument("--kills", type=int, default=8, help="faults in the run (any kind)")
    ap.add_argument("--min-gap", type=float, default=1.0)
    ap.add_argument("--max-gap", type=float, default=5.0)
    ap.add_argument("--after-assign", action="store_true",
                    help="count each gap from the moment the instance has partitions (at most "
                         "60 s after its start), so that kills land in restore and processing "
                         "even on a broker slow to assign")
    ap.add_argument("--faults", default="kill",
                    help="fault kinds drawn at random, comma-separated, each optionally "
                         "weighted as kind:weight: kill (SIGKILL, restarted at once), pause "
                         "(SIGSTOP longer than the session, then SIGCONT), leave (SIGTERM, "
                         "back 2-10 s later: scale in, then out), freeze (the broker hangs "
                         "for 2-8 s), cut (the instance's loopback traffic to the broker is "
                         "dropped for longer than the session, both keep running; needs "
                         "root and iptables)")
    ap.add_argument("--session-ms", type=int, default=6000,
                    help="session.timeout.ms of the instances (heartbeats every 500 ms)")
    ap.add_argument("--pause-min", type=float, default=None,
                    help="shortest pause in seconds [1.5 x session]")
    ap.add_argument("--pause-max", type=float, default=None,
                    help="longest pause in seconds [3 x session]")
    ap.add_argument("--shutdown-kill-share", type=float, default=0.15,
                    help="share of kills that hit during a SIGTERM shutdown")
    ap.add_argument("--rate", type=int, default=8000, help="events per second produced")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--outage", type=float, default=0.0,
                    help="seconds of a full broker outage mid-stream (mock: down; tansu: frozen)")
    ap.add_argument("--settle", type=float, default=300.0,
                    help="most seconds to wait for the last decisions after the last kill")
    ap.add_argument("--kill-seed", type=int, default=None, help="seed of the kill schedule")
    ap.add_argument("--work", help="keep files here (default: a temporary directory)")
    ap.add_argument("--examples", type=int, default=5)
    ap.add_argument("--kafka-set", action="append", default=[], metavar="KEY=TOML",
                    help="extra [kafka] line, e.g. static_membership=false (repeatable)")
    ap.add_argument("--consumer-set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra librdkafka consumer property (repeatable)")
    a = ap.parse_args()

    work = a.work or tempfile.mkdtemp(prefix="wg-soak-")
    os.makedirs(work, exist_ok=True)
    kill_seed = a.kill_seed if a.kill_seed is not None else random.randrange(1 << 30)
    random.seed(kill_seed)
    log(f"work dir {work}; broker {a.broker}; kill seed {kill_seed}")
    wg = a.wg

    # 1. The stream, and the reference: one uninterrupted replay of as many partitions.
    events = a.events
    if not events:
        events = os.path.join(work, "events.jsonl")
        subprocess.run([wg, "simulate", "--users", str(a.users), "--days", str(a.days),
                        "--seed", str(a.seed), "--attack-rate", str(a.attack_rate),
                        "--out", events, "--labels", os.path.join(work, "labels.csv")],
                       check=True, stdout=subprocess.DEVNULL)
    ref = os.path.join(work, "ref")
    want, want_freeze = reference(wg, events, ref, a.partitions)
    log(f"{sum(len(v) for v in want.values())} decisions and {len(want_freeze)} freezes "
        f"uninterrupted")

    # 2. Broker and instances.
    P = a.partitions
    subs = ["wallet.alerts.critical", "wallet.alerts.ato"]
    topics = [("wallet.events", P), ("walletguard.profiles", P), ("wallet.decisions", P),
              ("wallet.alerts", P), ("wallet.commands", P), ("wallet.events.dlq", P),
              ("walletguard.lists", P)]
    topics += [(s, P) for s in subs]
    broker = Broker(a.broker, wg, work, topics)
    addr = broker.start()
    consumer_set = {"session.timeout.ms": str(a.session_ms), "heartbeat.interval.ms": "500"}
    consumer_set.update(kv.split("=", 1) for kv in a.consumer_set)
    kinds = parse_faults(a.faults)
    pause_min = a.pause_min if a.pause_min is not None else 1.5 * a.session_ms / 1000
    pause_max = a.pause_max if a.pause_max is not None else 3.0 * a.session_ms / 1000
    base_cfg = f"""
[kafka]
brokers = "{addr}"
group_id = "wg-soak"
instance_id = "@INSTANCE@"
decisions_topic = "wallet.decisions"
create_topics = {"true" if a.broker == "tansu" else "false"}
partitions = {P}
{chr(10).join(a.kafka_set)}
[kafka.consumer]
{chr(10).join(f'"{k}" = "{v}"' for k, v in consumer_set.items())}
[http]
listen = "127.0.0.1:@HTTP@"
[log]
format = "json"
"""
    insts = [Instance(wg, work, f"soak{i}", base_cfg) for i in range(a.instances)]
    procs = []
    failures = []
    input_dups = []
    try:
        for inst in insts:
            inst.start()
        for inst in insts:
            deadline = time.time() + 60
            while time.time() < deadline and http_get(inst.url("/readyz"))[0] != 200:
                time.sleep(0.2)
        producer = subprocess.Popen(
            [wg, "produce", "--input", events, "--brokers", addr, "--topic", "wallet.events",
             "--rate", str(a.rate)],
            stdout=open(os.path.join(work, "produce.out"), "w"),
            stderr=open(os.path.join(work, "produce.err"), "w"))
        procs.append(producer)

        # 3. Faults at random moments; an outage in the middle if asked.
        outage_at = a.kills // 2 if a.outage > 0 else -1
        fault_log = open(os.path.join(work, "faults.log"), "w")
        t0 = time.time()
        counts = {}
        away = {}  # instances that left, and when they come back

        def note(msg):
            fault_log.write(f"{time.time() - t0:9.3f} {msg}\n")
            fault_log.flush()
            log(msg)

        def tick(seconds):
            end = time.time() + seconds
            while time.time() < end:
                for i in insts:
                    i.watch_assignment()
                    if i not in away and not i.alive():
                        # Nothing of ours stopped it: it failed by itself.
                        rc = i.proc.returncode
                        failures.append(f"{i.name} exited by itself with {rc} during the run")
                        note(f"{i.name} exited by itself with {rc}; restarting it")
                        i.start()
                    if i in away and time.time() >= away[i]:
                        del away[i]
                        i.start()
                        note(f"{i.name} joins again")
                time.sleep(0.05)

        for k in range(a.kills):
            gap = random.uniform(a.min_gap, a.max_gap)
            present = [i for i in insts if i not in away]
            inst = random.choice(present) if present else random.choice(insts)
            if a.after_assign and inst not in away:
                cap = time.time() + 60
                while not inst.assigned_seen and time.time() < cap:
                    inst.watch_assignment()
                    time.sleep(0.05)
            tick(gap)
            if k == outage_at:
                # An instance that left is not expected to be alive through the outage.
                outage_check(broker, [i for i in insts if i not in away], a.outage, failures)
            kind = random.choices([k_ for k_, _ in kinds], [w for _, w in kinds])[0]
            # A leave needs someone to stay; a lone instance is paused or killed instead.
            if kind == "leave" and (len(present) < 2 or inst in away):
                kind = "kill"
            if inst in away:
                kind = "kill" if kind in ("kill", "pause", "cut") else kind
                inst = random.choice(present) if present else None
                if inst is None:
                    tick(1)
                    continue
            counts[kind] = counts.get(kind, 0) + 1
            tag = f"fault {k + 1}/{a.kills}"
            if kind == "kill":
                shutdown = random.random() < a.shutdown_kill_share
                inst.kill(during_shutdown=shutdown)
                note(f"{tag}: kill {inst.name}{' during shutdown' if shutdown else ''}")
                inst.start()
            elif kind == "pause":
                secs = random.uniform(pause_min, pause_max)
                note(f"{tag}: pause {inst.name} for {secs:.1f} s")
                inst.pause()
                tick(secs)
                inst.resume()
                note(f"{inst.name} resumed")
            elif kind == "leave":
                back = random.uniform(2, 10)
                rc = inst.terminate(60)
                note(f"{tag}: {inst.name} leaves (SIGTERM, exit {rc}); joins in {back:.1f} s")
                if rc != 0:
                    failures.append(f"{inst.name} exited with {rc} after SIGTERM (leave)")
                away[inst] = time.time() + back
            elif kind == "freeze":
                secs = random.uniform(2, 8)
                note(f"{tag}: broker frozen for {secs:.1f} s")
                broker.down()
                tick(secs)
                broker.up()
                note("broker back")
            elif kind == "cut":
                secs = random.uniform(pause_min, pause_max)
                note(f"{tag}: network cut between {inst.name} and the broker for {secs:.1f} s")
                with NetCut(broker.port(), inst.proc.pid):
                    tick(secs)
                note(f"{inst.name} reconnected")
        for i in list(away):
            del away[i]
            i.start()
            note(f"{i.name} joins again")
        log(f"faults: {counts}")

        # 4. The rest of the stream, then its last decisions.
        producer.wait()
        if producer.returncode != 0:
            failures.append(f"produce failed: {open(os.path.join(work, 'produce.err')).read()[-500:]}")
        log(open(os.path.join(work, "produce.out")).read().strip())
        total = sum(len(v) for v in want.values())
        deadline = time.time() + a.settle
        got = {}
        while True:
            for inst in insts:
                inst.watch_assignment()
                if not inst.alive():
                    log(f"{inst.name} exited with {inst.proc.returncode}; restarting it")
                    inst.start()
            got = {}
            for d in consume(wg, addr, "wallet.decisions"):
                got.setdefault(d["event_id"], []).append(d)
            if all(e in got for e in want) or time.time() > deadline:
                break
            log(f"{sum(1 for e in want if e in got)} of {len(want)} events decided; waiting")
            time.sleep(5)
        commands = consume(wg, addr, "wallet.commands", 4)
        # The input as the broker holds it: a record stored twice (a producer retry) is
        # decided twice by any consumer, the second time after the user's later events. The
        # producer is idempotent, so this should be 0. When it is not, the reference becomes
        # one uninterrupted replay of the input as the broker holds it (each partition in its
        # offset order), which is what walletguard promises to equal; the run is invalid only
        # if that replay also changes the decision of an event stored once (then the
        # comparison itself would be in doubt).
        def ids(evs):
            return collections.Counter(e.get("event_id") if isinstance(e, dict) else None
                                       for e in evs)
        with (gzip.open(events, "rt") if events.endswith(".gz") else open(events)) as f:
            sent = ids(json.loads(l) for l in f if l.strip())
        held = consume(wg, addr, "wallet.events")
        for eid, n in ids(held).items():
            if n > sent.get(eid, 0):
                input_dups.append(eid)
        if input_dups:
            log(f"the input topic holds {len(input_dups)} records twice (producer retries, "
                f"not walletguard), e.g. {input_dups[:3]}; the reference is now a replay of "
                f"the input as held")
            as_held = os.path.join(work, "events.as_held.jsonl")
            with open(as_held, "w") as f:
                for e in held:
                    f.write(json.dumps(e) + "\n")
            want2, freeze2 = reference(wg, as_held, ref + ".as_held", a.partitions)
            dup_set = set(input_dups)
            shifted = [e for e in want if e not in dup_set and want2.get(e) != want[e]]
            if shifted:
                failures.append(f"the input topic holds {len(input_dups)} records twice, and "
                                f"replaying it as held changes {len(shifted)} decisions of "
                                f"events stored once, e.g. {shifted[:3]}: the run is invalid")
            else:
                want.clear()
                want.update(want2)
                want_freeze.clear()
                want_freeze.update(freeze2)

        # 5. Clean exit on SIGTERM.
        for inst in insts:
            rc = inst.terminate(60)
            if rc != 0:
                failures.append(f"{inst.name} exited with {rc} after SIGTERM")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for inst in insts:
            if inst.alive():
                inst.proc.kill()
        broker.stop()

    # A broker that lost records invalidates the run: say so instead of blaming walletguard.
    if a.broker == "mock":
        dropped = [l.strip() for l in open(os.path.join(work, "mock.log"))
                   if l.startswith("dropped ")]
        if dropped:
            failures.append("the mock broker dropped records (librdkafka's mock keeps 5 MB "
                            f"per partition; use more partitions or fewer events): {dropped[:4]}")

    # 6. The comparison.
    missing = [e for e in want if e not in got]
    diverging = []
    for e, ds in got.items():
        ref = want.get(e)
        if ref is None:
            diverging.append((e, ds, None))
        elif any(d not in ref for d in ds):
            diverging.append((e, ds, ref))
    # Kept for a failed run's diagnosis: every decision read back, and each divergence.
    with open(os.path.join(work, "got.decisions"), "w") as f:
        for ds in got.values():
            for d in ds:
                f.write(json.dumps(d) + "\n")
    with open(os.path.join(work, "diverging.jsonl"), "w") as f:
        for e, ds, ref in diverging:
            f.write(json.dumps({"event_id": e, "got": ds, "want": ref}) + "\n")
    got_freeze = {c["command_id"] for c in commands if c["command"] == "freeze_account"}
    extra = sorted(got_freeze - want_freeze)
    lost = sorted(want_freeze - got_freeze)
    repeats = sum(len(v) for v in got.values()) - len(got)
    waits = [w for inst in insts for w in inst.assign_waits]
    result = {
        "broker": a.broker, "faults": a.kills, "kinds": counts, "instances": a.instances,
        "kill_seed": kill_seed,
        "events": total, "decision_records": sum(len(v) for v in got.values()),
        "repeated": repeats, "missing": len(missing), "diverging": len(diverging),
        "input_duplicates": len(input_dups),
        "freezes_uninterrupted": len(want_freeze), "freezes": len(got_freeze),
        "extra_freezes": len(extra), "lost_freezes": len(lost),
        "restart_to_assignment_s": {
            "n": len(waits),
            "median": sorted(waits)[len(waits) // 2] if waits else None,
            "max": max(waits) if waits else None,
        },
        "failures": failures,
    }
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    log(json.dumps(result))
    n = a.examples
    if missing:
        log(f"missing ({len(missing)}), e.g. {missing[:n]}")
    for e, ds, ref in diverging[:n]:
        log(f"diverging {e}: got {ds} want {ref}")
    if extra:
        log(f"extra freezes ({len(extra)}), e.g. {extra[:n]}")
    if lost:
        log(f"lost freezes ({len(lost)}), e.g. {lost[:n]}")
    for f_ in failures:
        log(f"failure: {f_}")
    bad = missing or diverging or extra or lost or failures
    if bad:
        log(f"FAILED (files kept in {work})")
        sys.exit(1)
    log(f"passed: {total} events, {a.kills} faults {counts}, {repeats} decided again, all identical; "
        f"{len(got_freeze)} freezes, the same set as uninterrupted")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


def outage_check(broker, insts, seconds, failures):
    """Takes the broker away for `seconds`; /readyz must say not ready meanwhile, the
    instances must stay alive, and must be ready again within 60 s of the broker's return."""
    log(f"broker outage for {seconds:.0f} s ({'frozen' if broker.kind == 'tansu' else 'down'})")
    broker.down()
    end = time.time() + seconds
    saw_unready = saw_zero = False
    while time.time() < end:
        for inst in insts:
            status, _ = http_get(inst.url("/readyz"))
            if status != 200:
                saw_unready = True
            status, body = http_get(inst.url("/metrics"))
            if status == 200 and metric(body, "walletguard_kafka_brokers_up") == 0:
                saw_zero = True
        time.sleep(0.5)
    broker.up()
    if not saw_unready:
        failures.append(f"/readyz stayed 200 through a {seconds:.0f} s broker outage")
    if not saw_zero:
        failures.append(f"walletguard_kafka_brokers_up never 0 in a {seconds:.0f} s broker outage")
    deadline = time.time() + 60
    for inst in insts:
        while time.time() < deadline and http_get(inst.url("/readyz"))[0] != 200:
            time.sleep(0.5)
        if not inst.alive():
            failures.append(f"{inst.name} died during the broker outage")
        else:
            status, body = http_get(inst.url("/readyz"))
            if status != 200:
                why = body.strip()
                failures.append(f"{inst.name} not ready 60 s after the broker came back ({why})")
    log("broker back")


if __name__ == "__main__":
    main()
