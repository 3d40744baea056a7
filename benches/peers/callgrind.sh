#!/usr/bin/env bash
# Instructions per request of every end-to-end HTTP row (client and server rows) of the
# http_client bench, counted by valgrind's callgrind (see benches/callgrind_rows.sh).
#
#   benches/peers/callgrind.sh [N] [row ...]     (default N = 1000, every row)
#
# Profiles stay in target/callgrind/<row>.<requests>.out for `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/callgrind_rows.sh
n=${1:-1000}
shift || true
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(bare middleware preset preset-untimed stack client client-execute tower-http tower-http-graceful tower-http-graceful-hyper-util tower-http-graceful-hyper-util-header-timeout harden-server harden-server-prepared harden-server-no-header-timeout)
bin=$(cargo bench -p harden-peers --bench http_client --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
callgrind_rows "$bin" "" request "$n" "${rows[@]}"
