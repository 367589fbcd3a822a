#!/usr/bin/env bash
# Container health probe: GET /healthz on walletguard's own HTTP port, with bash alone (no curl in
# the runtime image). The port comes from WALLETGUARD_HTTP__LISTEN (default 0.0.0.0:9898), the
# same variable walletguard reads, so the probe follows a changed listen address. Exit 0 only on
# "200"; the service answers 503 once its pipeline has failed.
set -u
listen="${WALLETGUARD_HTTP__LISTEN:-0.0.0.0:9898}"
port="${listen##*:}"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
IFS=' ' read -r -t 5 _ status _ <&3 || exit 1
[ "$status" = "200" ]
