#!/usr/bin/env bash
# Creates walletguard's topics on a Kafka cluster, idempotently, then checks their partition
# counts (an existing topic with the wrong count is an error: the changelog must have exactly
# the input's partitions). Run by compose's kafka-init service; usable by hand.
#
# TOPICS: one topic per line, "NAME PARTITIONS [key=value,key=value]" (topic configs).
# BOOTSTRAP: bootstrap servers (default kafka:9092). REPLICATION: replication factor (default 1).
# KAFKA_TOPICS: the kafka-topics.sh to run (default the apache/kafka image's).
set -euo pipefail
bootstrap="${BOOTSTRAP:-kafka:9092}"
replication="${REPLICATION:-1}"
kt="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"
: "${TOPICS:?TOPICS must list the topics to create}"

while read -r name parts configs; do
  [ -n "${name:-}" ] || continue
  args=(--bootstrap-server "$bootstrap" --create --if-not-exists --topic "$name"
        --partitions "$parts" --replication-factor "$replication")
  for c in ${configs//,/ }; do args+=(--config "$c"); done
  "$kt" "${args[@]}"
done <<< "$TOPICS"

status=0
while read -r name parts _; do
  [ -n "${name:-}" ] || continue
  have=$("$kt" --bootstrap-server "$bootstrap" --describe --topic "$name" \
         | grep -o 'PartitionCount: *[0-9]*' | head -n1 | grep -o '[0-9]*$' || true)
  if [ "$have" != "$parts" ]; then
    echo "topic $name has ${have:-no} partitions, expected $parts" >&2
    status=1
  else
    echo "topic $name: $parts partitions"
  fi
done <<< "$TOPICS"
exit "$status"
