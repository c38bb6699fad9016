#!/usr/bin/env bash
# Compares the agent's syscall-mode collection cycle with bpftool on the same
# population, in the same run (the machine is shared: only figures measured
# side by side compare).
#
# It builds ebpf-loadgen and bench/cycletime, holds a population with
# ebpf-loadgen, then measures:
#   - the peer: `bpftool -j map show`, `bpftool -j prog show` and
#     `bpftool -j link show` back to back, RUNS times, median;
#   - the agent: the first cycle of RUNS fresh collectors (median), and RUNS
#     steady cycles of one collector after its first (median), at the
#     profile's concurrency and with a single worker, with tables large
#     enough to track every object, no rate limit, and ownership off (its
#     procfs pass is another ~4 system calls per held object);
#   - with strace, when installed, the system calls of one bpftool run
#     (not timed);
# and prints a table, the ratios bpftool / agent, and PASS or MISS against
# the goal: steady cycle at least GOAL times faster than bpftool, with no
# allocation. The population is released on exit, whatever happens.
#
# Environment (defaults in brackets): MAPS [10000], PROGRAMS [5000],
# LINKS [2000], FILL [0.5], RUNS [5], PROFILE [production], GOAL [4],
# BPFTOOL [bpftool on $PATH, else /usr/sbin/bpftool], READY_TIMEOUT [300] (s).
#
# Needs root (CAP_SYS_ADMIN, CAP_BPF), Go and bpftool. Exit status: 0 when
# the measurement ran, whether the goal was met or not; 1 when it failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

MAPS="${MAPS:-10000}"
PROGRAMS="${PROGRAMS:-5000}"
LINKS="${LINKS:-2000}"
FILL="${FILL:-0.5}"
RUNS="${RUNS:-5}"
PROFILE="${PROFILE:-production}"
GOAL="${GOAL:-4}"
READY_TIMEOUT="${READY_TIMEOUT:-300}"

fail() {
	echo "syscall-vs-bpftool: $*" >&2
	exit 1
}

for v in MAPS PROGRAMS LINKS RUNS READY_TIMEOUT; do
	[[ "${!v}" =~ ^[0-9]+$ ]] || fail "$v must be a whole number, got '${!v}'"
done
((RUNS >= 1)) || fail "RUNS must be at least 1"
[[ "$(id -u)" == 0 ]] || fail "run as root: listing every eBPF object needs CAP_SYS_ADMIN"

# shellcheck source=bench/lib/peer.sh
source bench/lib/peer.sh
peer_setup

echo "building ebpf-loadgen and bench/cycletime" >&2
go build -o "$work/" ./cmd/ebpf-loadgen ./bench/cycletime

hold_population
time_bpftool

# agent runs cycletime with table capacities that hold the population and
# whatever else the kernel has, and reads its "key value" lines into the
# associative array named by $1.
agent() {
	local -n out="$1"
	shift
	local tables="$((MAPS + 4096)),$((PROGRAMS + helpers + 4096)),$((LINKS + 4096))"
	"$work/cycletime" -runs "$RUNS" -profile "$PROFILE" -tables "$tables" "$@" >"$work/agent"
	local key value
	while read -r key value; do
		out["$key"]="$value"
	done <"$work/agent"
	local counted="${out[objects]}"
	((counted >= population)) || fail "the agent counted $counted objects, fewer than the $population held"
	[[ "${out[untracked]}" == 0 && "${out[unreadable]}" == 0 ]] ||
		fail "the agent left ${out[untracked]} objects untracked and ${out[unreadable]} unreadable: not a steady state"
}

echo "timing the agent ($PROFILE profile), $RUNS runs" >&2
declare -A shipped single
agent shipped
echo "timing the agent with one worker, $RUNS runs" >&2
agent single -workers 1

kernel="$(uname -r)"
cpus="$(nproc)"
bpftool_version="$("$BPFTOOL" version | head -n 1)"
echo
echo "kernel $kernel, $cpus CPUs, $bpftool_version, $(go version | cut -d' ' -f3)"
echo "population: $MAPS maps, $PROGRAMS programs (+$helpers helper), $LINKS links, fill $FILL, created in ${create_seconds}s;" \
	"the agent counted ${shipped[objects]} objects (${shipped[maps]} maps, ${shipped[programs]} programs, ${shipped[links]} links)"
echo "medians of $RUNS runs; agent: syscall mode, no rate limit, every object tracked, ownership off (max_owners 0)"
echo

# row NAME MILLISECONDS SYSCALLS ALLOCS prints one line of the table.
objects="${shipped[objects]}"
row() {
	awk -v name="$1" -v ms="$2" -v sc="$3" -v al="$4" -v n="$objects" 'BEGIN {
		per_sc = (sc == "-") ? "-" : sprintf("%.2f", sc / n)
		printf "%-44s %12.3f %10.2f %14s %12s %13s\n", name, ms, ms * 1000 / n, sc, per_sc, al }'
}
ms() { awk -v ns="$1" 'BEGIN { printf "%.3f", ns / 1e6 }'; }

printf "%-44s %12s %10s %14s %12s %13s\n" "" "cycle (ms)" "µs/object" "syscalls" "syscalls/obj" "allocs/cycle"
row "bpftool -j map+prog+link show" "$bpftool_ms" "$bpftool_syscalls" "-"
row "agent first cycle (${shipped[workers]} workers)" "$(ms "${shipped[first_ns]}")" "${shipped[first_syscalls]}" "${shipped[first_allocs]}"
row "agent steady cycle (${shipped[workers]} workers)" "$(ms "${shipped[steady_ns]}")" "${shipped[steady_syscalls]}" "${shipped[steady_allocs]}"
row "agent first cycle (1 worker)" "$(ms "${single[first_ns]}")" "${single[first_syscalls]}" "${single[first_allocs]}"
row "agent steady cycle (1 worker)" "$(ms "${single[steady_ns]}")" "${single[steady_syscalls]}" "${single[steady_allocs]}"
echo
echo "bpftool runs (ms): $(printf '%s\n' "${bpftool_us[@]}" | awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $1 / 1000 }')"
echo "agent steady cycle (${shipped[workers]} workers) min/median/max (ms):" \
	"$(ms "${shipped[steady_min_ns]}") / $(ms "${shipped[steady_ns]}") / $(ms "${shipped[steady_max_ns]}")"
echo

ratio() { awk -v a="$1" -v ns="$2" 'BEGIN { printf "%.1f", a * 1e6 / ns }'; }
steady_ratio="$(ratio "$bpftool_ms" "${shipped[steady_ns]}")"
first_ratio="$(ratio "$bpftool_ms" "${shipped[first_ns]}")"
echo "bpftool / agent (${shipped[workers]} workers): steady ${steady_ratio}x, first cycle ${first_ratio}x"
echo "bpftool / agent (1 worker): steady $(ratio "$bpftool_ms" "${single[steady_ns]}")x," \
	"first cycle $(ratio "$bpftool_ms" "${single[first_ns]}")x"

# Allocations per cycle are judged as Go's allocs/op and testing.AllocsPerRun
# count them, rounded down: the runtime itself allocates a 112-byte sudog
# now and then when a goroutine blocks on a channel or a WaitGroup (see
# docs/benchmarks.md); the exact mean is printed beside.
steady_allocs="$(awk -v a="${shipped[steady_allocs]}" 'BEGIN { printf "%d", a }')"
verdict=PASS
if ! awk -v r="$steady_ratio" -v g="$GOAL" -v a="$steady_allocs" 'BEGIN { exit !(r >= g && a == 0) }'; then
	verdict=MISS
fi
echo "goal: steady cycle >= ${GOAL}x faster than bpftool and 0 allocations per steady cycle: $verdict" \
	"(${steady_ratio}x; $steady_allocs allocs/op, mean ${shipped[steady_allocs]} heap allocations per cycle)"

release || fail "ebpf-loadgen failed to release the population"
