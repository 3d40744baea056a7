#!/usr/bin/env bash
# Instructions per gRPC unary call of each row of benches/grpc.rs, counted by valgrind's
# callgrind: each row makes N and then 2N sequential calls on one current-thread tokio runtime
# holding client and server (`HARDEN_BENCH_CALLGRIND` mode), and the difference over N is the
# per-call figure, start-up cancelled.
#
#   benches/grpc_callgrind.sh [N] [row ...]     (default N = 1000, every row)
#
# Profiles stay in target/callgrind/grpc-<row>.<calls>.out for `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
shift || true
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(bare bare-timeout harden harden-timeout harden-breaker)
bin=$(cargo bench --bench grpc --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "no grpc bench binary" >&2; exit 1; }
out=target/callgrind
mkdir -p "$out"

count() { # row calls -> total instructions
    HARDEN_BENCH_CALLGRIND=$1 HARDEN_BENCH_REQUESTS=$2 valgrind --tool=callgrind \
        --callgrind-out-file="$out/grpc-$1.$2.out" "$bin" >/dev/null 2>"$out/grpc-$1.$2.log"
    sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$out/grpc-$1.$2.out" | head -1
}

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $n and $((2 * n)) calls per row"
echo
echo "| row | instructions per call | over bare |"
echo "|---|---:|---:|"
bare=""
for row in "${rows[@]}"; do
    a=$(count "$row" "$n")
    b=$(count "$row" $((2 * n)))
    per=$(( (b - a) / n ))
    [ -n "$bare" ] || [ "$row" != bare ] || bare=$per
    if [ -n "$bare" ] && [ "$row" != bare ]; then over=$(printf '%+d' $((per - bare))); else over="—"; fi
    echo "| $row | $per | $over |"
done
