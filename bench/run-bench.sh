#!/bin/sh
# run-bench.sh - run ravel-bench with 1 and then 2 workers, keep the RESULT
# lines in bench/results/latest.txt and print the main metric of each
# workload side by side.
#
#   bench/run-bench.sh [--quick] [--runs R] [--verbose] [WORKLOAD ...]
#
# The arguments go to ravel-bench unchanged. RAVEL_BENCH=path picks another
# binary than build-release/bench/ravel-bench (what `make bench` builds).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=${RAVEL_BENCH:-$root/build-release/bench/ravel-bench}
if [ ! -x "$bin" ]; then
    echo "run-bench.sh: no $bin; build it first with 'make bench', or" >&2
    echo "  cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DRAVEL_TESTING=OFF" >&2
    echo "  cmake --build build-release --target ravel-bench" >&2
    exit 1
fi

mkdir -p "$here/results"
out=$here/results/latest.txt
tmp=$out.tmp.$$
trap 'rm -f "$tmp" "$tmp.run"' EXIT
: >"$tmp"

# stdout carries only RESULT lines; progress and errors stay on the terminal.
status=0
for workers in 1 2; do
    if "$bin" --workers "$workers" "$@" >"$tmp.run"; then
        :
    else
        status=$?
        echo "run-bench.sh: ravel-bench --workers $workers exited with status $status" >&2
    fi
    grep '^RESULT ' "$tmp.run" >>"$tmp" || true
done
mv "$tmp" "$out"
echo "saved $out" >&2
echo

# One row per workload, in the order they ran: the first metric of the line
# is its main one (fib's is ms_<n>w, so its name depends on the worker count).
awk '
$1 == "RESULT" {
    name = $2
    split($4, w, "="); workers = w[2]
    split($5, kv, "="); key = kv[1]; val = kv[2]
    if (key ~ /^ms_[0-9]+w$/) key = "ms_<n>w"
    if (!(name in seen)) { seen[name] = 1; order[++count] = name }
    metric[name] = key
    value[name, workers] = val
}
END {
    fmt = "%-15s %-20s %14s %14s\n"
    printf fmt, "workload", "metric (median)", "1 worker", "2 workers"
    for (i = 1; i <= count; i++) {
        n = order[i]
        one = ((n, 1) in value) ? value[n, 1] : "-"
        two = ((n, 2) in value) ? value[n, 2] : "-"
        printf fmt, n, metric[n], one, two
    }
}' "$out"
exit "$status"
