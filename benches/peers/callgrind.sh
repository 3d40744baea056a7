#!/usr/bin/env bash
# Instructions per request of every end-to-end HTTP row (client and server rows), counted by
# valgrind's callgrind: each row runs N and then 2N sequential requests on one current-thread
# tokio runtime holding client and server (`HARDEN_BENCH_CALLGRIND` mode of the http_client
# bench), and the difference over N is the per-request figure, start-up cancelled.
#
#   benches/peers/callgrind.sh [N] [row ...]     (default N = 1000, every row)
#
# Profiles stay in target/callgrind/<row>.<requests>.out for `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-1000}
shift || true
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(bare middleware preset preset-untimed stack client client-execute tower-http tower-http-graceful tower-http-graceful-hyper-util tower-http-graceful-hyper-util-header-timeout harden-server harden-server-prepared harden-server-no-header-timeout)
bin=$(cargo bench -p harden-peers --bench http_client --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "no http_client bench binary" >&2; exit 1; }
out=target/callgrind
mkdir -p "$out"

count() { # row requests -> total instructions
    HARDEN_BENCH_CALLGRIND=$1 HARDEN_BENCH_REQUESTS=$2 valgrind --tool=callgrind \
        --callgrind-out-file="$out/$1.$2.out" "$bin" >/dev/null 2>"$out/$1.$2.log"
    sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$out/$1.$2.out" | head -1
}

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $n and $((2 * n)) requests per row"
echo
echo "| row | instructions per request | over bare |"
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
