#!/usr/bin/env bash
# Instructions per gRPC unary call of each row of benches/grpc.rs, counted by valgrind's
# callgrind (see benches/callgrind_rows.sh).
#
#   benches/grpc_callgrind.sh [N] [row ...]     (default N = 1000, every row)
#
# Profiles stay in target/callgrind/grpc-<row>.<calls>.out for `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/callgrind_rows.sh
n=${1:-1000}
shift || true
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(bare bare-timeout harden harden-timeout harden-breaker)
bin=$(cargo bench --bench grpc --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
callgrind_rows "$bin" grpc- call "$n" "${rows[@]}"
