#!/usr/bin/env python3
"""Does a broker accept an offset commit from a group member whose generation is stale?

No walletguard code is involved: the members are librdkafka consumers (confluent-kafka), and
the stale commit is a raw OffsetCommit v2 request (kafka-python 2.0.2's protocol classes):
`pip install confluent-kafka kafka-python==2.0.2`.

  1. member A joins group G and is assigned the topic's partition (generation N); its
     generation and member id are noted, then A is killed without leaving the group;
  2. member B joins G; once A's session (6 s) expires, B holds the partition (generation > N);
  3. an OffsetCommit with A's stale generation and member id is sent to G's coordinator;
  4. the group's committed offset is read back.

Apache Kafka answers step 3 with ILLEGAL_GENERATION (22) or UNKNOWN_MEMBER_ID (25) and keeps
B's offset; a broker that answers 0 and stores the offset lets a stalled instance move the
group's position after it lost the partition.

    python3 tests/probes/stale_commit_probe.py 127.0.0.1:9092            # creates its topic
    python3 tests/probes/stale_commit_probe.py 127.0.0.1:9092 TOPIC      # an existing topic

Prints one JSON line; exit code 0 if the stale commit was refused, 3 if it was accepted.
"""

import json
import logging
import re
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.client_async import KafkaClient
from kafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest


class Joined(logging.Handler):
    """Reads librdkafka's cgrp debug lines for this member's generation and member id."""

    def __init__(self):
        super().__init__()
        self.generation, self.member_id = None, None

    def emit(self, record):
        msg = record.getMessage()
        m = re.search(r"JoinGroup response: GenerationId (\d+), .*my MemberId \"?([^\",]+)", msg)
        if m:
            self.generation, self.member_id = int(m.group(1)), m.group(2).strip()


def member(brokers, group, topic):
    """A librdkafka consumer in `group`, polled until it holds the topic's partition."""
    seen = Joined()
    log = logging.getLogger("rdkafka-" + uuid.uuid4().hex[:6])
    log.setLevel(logging.DEBUG)
    log.addHandler(seen)
    c = Consumer({"bootstrap.servers": brokers, "group.id": group,
                  "enable.auto.commit": False, "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500, "debug": "cgrp"}, logger=log)
    c.subscribe([topic])
    deadline = time.time() + 60
    while not c.assignment() and time.time() < deadline:
        c.poll(0.2)
    if not c.assignment() or seen.generation is None:
        sys.exit(f"probe: the member was never assigned (generation {seen.generation})")
    return c, seen


def raw(brokers, request):
    """Sends one request to the (single) broker and returns its response."""
    client = KafkaClient(bootstrap_servers=brokers, api_version=(2, 0))
    deadline = time.time() + 10
    node = None
    while node is None and time.time() < deadline:
        client.poll(timeout_ms=100)
        node = client.least_loaded_node()
        if node is not None and not client.ready(node):
            client.poll(timeout_ms=100)
            node = node if client.ready(node) else None
    fut = client.send(node, request)
    client.poll(future=fut, timeout_ms=10000)
    client.close()
    if not fut.succeeded():
        raise RuntimeError(f"request failed: {fut.exception}")
    return fut.value


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--member-a":
        # The child: join, print the generation, then wait to be killed.
        brokers, group, topic = sys.argv[2].split(",")
        _, seen = member(brokers, group, topic)
        print(json.dumps({"generation": seen.generation, "member_id": seen.member_id}),
              flush=True)
        time.sleep(3600)
        return
    brokers = sys.argv[1]
    group = "stale-probe-" + uuid.uuid4().hex[:8]
    if len(sys.argv) > 2:
        topic = sys.argv[2]  # created beforehand (librdkafka's mock cluster has no CreateTopics)
    else:
        topic = "stale-probe-" + uuid.uuid4().hex[:8]
        admin = AdminClient({"bootstrap.servers": brokers})
        for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            f.result()
        time.sleep(1)

    a = subprocess.Popen([sys.executable, __file__, "--member-a", f"{brokers},{group},{topic}"],
                         stdout=subprocess.PIPE, text=True)
    stale = json.loads(a.stdout.readline())
    a.kill()
    a.wait()

    b, seen = member(brokers, group, topic)
    b.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)

    req = OffsetCommitRequest[2](group, stale["generation"], stale["member_id"], -1,
                                 [(topic, [(0, 42, "")])])
    resp = raw(brokers, req)
    err = resp.topics[0][1][0][1]
    fetched = raw(brokers, OffsetFetchRequest[1](group, [(topic, [0])]))
    committed = fetched.topics[0][1][0][1]
    result = {"stale_generation": stale["generation"], "current_generation": seen.generation,
              "stale_commit_error_code": err, "committed_after": committed,
              "accepted": err == 0 and committed == 42}
    print(json.dumps(result))
    b.close()
    sys.exit(3 if result["accepted"] else 0)


if __name__ == "__main__":
    main()
