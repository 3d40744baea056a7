# Sourced by benches/peers/callgrind.sh and benches/grpc_callgrind.sh: counts the instructions
# of each row of a bench binary's `HARDEN_BENCH_CALLGRIND` mode under valgrind's callgrind. Each
# row runs N and then 2N sequential calls on one current-thread runtime holding client and
# server; the difference over N is the per-call figure, start-up cancelled.
#
#   callgrind_rows <bin> <profile prefix> <unit> N row ...
#
# Profiles stay in target/callgrind/<prefix><row>.<calls>.out for `callgrind_annotate`.
callgrind_rows() {
    local bin=$1 prefix=$2 unit=$3 n=$4
    shift 4
    [ -x "$bin" ] || { echo "no bench binary" >&2; return 1; }
    local out=target/callgrind
    mkdir -p "$out"
    count() { # row calls -> total instructions
        HARDEN_BENCH_CALLGRIND=$1 HARDEN_BENCH_REQUESTS=$2 valgrind --tool=callgrind \
            --callgrind-out-file="$out/$prefix$1.$2.out" "$bin" >/dev/null 2>"$out/$prefix$1.$2.log"
        sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$out/$prefix$1.$2.out" | head -1
    }
    echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $n and $((2 * n)) ${unit}s per row"
    echo
    echo "| row | instructions per $unit | over bare |"
    echo "|---|---:|---:|"
    local bare="" row a b per over
    for row in "$@"; do
        a=$(count "$row" "$n")
        b=$(count "$row" $((2 * n)))
        per=$(( (b - a) / n ))
        [ -n "$bare" ] || [ "$row" != bare ] || bare=$per
        if [ -n "$bare" ] && [ "$row" != bare ]; then over=$(printf '%+d' $((per - bare))); else over="—"; fi
        echo "| $row | $per | $over |"
    done
}
