#!/usr/bin/env bash
# Measures the agent's ownership pass (issue 10, item 7) on one population
# spread over processes, in one run (the machine is shared: only figures
# measured side by side compare):
#
#   - ebpf-loadgen --processes: MAPS maps, PROGRAMS programs and LINKS
#     links, each held by one of PROCESSES sleep(1) processes;
#   - bench/holderpass, in one process, TURNS turns of: the task-file floor
#     (an iterator over every task's files writing only the IDs of BPF
#     files), the ID-only object iterators (bench/floor), the agent's
#     holders iterator (kernel.Holders), the ownership pass (owner.Iter:
#     holders resolved to process, container and pod), and the object side
#     of a steady cycle (kernel.Iterators, every object known);
#
# and prints a table, the ratios, and PASS or MISS against the goal: the
# ownership pass plus the object iterators at most GOAL times the task-file
# floor plus the object floor. The population is released on exit, whatever
# happens.
#
# Environment (defaults in brackets): MAPS [10000], PROGRAMS [5000],
# LINKS [2000], PROCESSES [1000], TURNS [21], GOAL [1.5],
# READY_TIMEOUT [300] (s).
#
# Needs root (or CAP_BPF and CAP_PERFMON, and a RLIMIT_NOFILE above the
# population for ebpf-loadgen) and Go; not clang (the BPF objects are
# committed). Exit status: 0 when the measurement ran, whether the goal was
# met or not; 1 when it failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

MAPS="${MAPS:-10000}"
PROGRAMS="${PROGRAMS:-5000}"
LINKS="${LINKS:-2000}"
PROCESSES="${PROCESSES:-1000}"
TURNS="${TURNS:-21}"
GOAL="${GOAL:-1.5}"
READY_TIMEOUT="${READY_TIMEOUT:-300}"

fail() {
	echo "holders-vs-floor: $*" >&2
	exit 1
}

for v in MAPS PROGRAMS LINKS PROCESSES TURNS READY_TIMEOUT; do
	[[ "${!v}" =~ ^[0-9]+$ ]] || fail "$v must be a whole number, got '${!v}'"
done
[[ "$GOAL" =~ ^[0-9]+(\.[0-9]+)?$ ]] || fail "GOAL must be a number, got '$GOAL'"
((TURNS >= 1 && PROCESSES >= 1)) || fail "TURNS and PROCESSES must be at least 1"

work="$(mktemp -d)"
loadgen_pid=""
cleanup() {
	local status=$?
	if [[ -n "$loadgen_pid" ]]; then
		kill -TERM "$loadgen_pid" 2>/dev/null || true
		wait "$loadgen_pid" || status=1
		cat "$work/loadgen.err" >&2
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "building ebpf-loadgen, bench/holderpass" >&2
go build -o "$work/" ./cmd/ebpf-loadgen ./bench/holderpass

echo "creating $MAPS maps, $PROGRAMS programs, $LINKS links over $PROCESSES processes" >&2
"$work/ebpf-loadgen" --maps "$MAPS" --programs "$PROGRAMS" --links "$LINKS" --processes "$PROCESSES" \
	>"$work/ready" 2>"$work/loadgen.err" &
loadgen_pid=$!
for ((waited = 0; ; waited++)); do
	grep -q '^{"ready":true' "$work/ready" && break
	if ! kill -0 "$loadgen_pid" 2>/dev/null; then
		status=0
		wait "$loadgen_pid" || status=$?
		loadgen_pid=""
		cat "$work/loadgen.err" >&2
		fail "ebpf-loadgen exited with status $status before it was ready"
	fi
	((waited < READY_TIMEOUT * 10)) || fail "ebpf-loadgen not ready after ${READY_TIMEOUT}s"
	sleep 0.1
done
create_seconds="$(sed -n 's/.*"create_seconds":\([0-9.e+-]*\).*/\1/p' "$work/ready")"
helpers=$((LINKS > 0 ? 1 : 0))
population=$((MAPS + PROGRAMS + helpers + LINKS))

echo "timing, $TURNS turns" >&2
"$work/holderpass" -runs "$TURNS" >"$work/out"
declare -A r
while read -r k v; do
	r[$k]="$v"
done <"$work/out"

# The population's holders are there: every object once, over the processes.
((r[taskfloor_ids] >= population && r[holders_fds] >= population)) ||
	fail "the passes found ${r[taskfloor_ids]} (floor) and ${r[holders_fds]} (holders) descriptors, fewer than the $population held"
((r[holders_processes] >= PROCESSES)) || fail "the holders pass found ${r[holders_processes]} processes, fewer than $PROCESSES"

ms() { awk -v ns="$1" 'BEGIN { printf "%.3f", ns / 1e6 }'; }
echo "kernel $(uname -r), $(nproc) CPUs, $(go env GOVERSION)"
echo "population: $MAPS maps, $PROGRAMS programs (+$helpers helper), $LINKS links over $PROCESSES processes, created in ${create_seconds}s"
echo "found: ${r[holders_fds]} descriptors held by ${r[holders_processes]} processes (floor: ${r[taskfloor_ids]}); ${r[objects_objects]} objects"
echo "medians of ${r[runs]} turns, contestants in rotating order"
echo
printf '%-52s %10s %10s %10s %9s\n' "" "pass (ms)" "min (ms)" "max (ms)" "syscalls"
for c in taskfloor:"task-file floor (IDs of BPF files)" objfloor:"object floor (ID-only map/prog/link iterators)" \
	holders:"holders iterator (kernel.Holders)" owner:"ownership pass (owner.Iter)" objects:"object iterators, steady (kernel.Iterators)"; do
	k="${c%%:*}"
	printf '%-52s %10s %10s %10s %9s\n' "${c#*:}" "$(ms "${r[${k}_ns]}")" "$(ms "${r[${k}_min_ns]}")" \
		"$(ms "${r[${k}_max_ns]}")" "${r[${k}_syscalls]}"
done
echo
echo "holders / task-file floor: ${r[holders_over_taskfloor]}x"
echo "ownership pass / task-file floor: ${r[owner_over_taskfloor]}x"
echo "(ownership pass + object iterators) / (task-file floor + object floor): ${r[ownership_over_floor]}x"
echo "heap allocations per ownership pass (whole process): ${r[owner_allocs]}"
verdict=MISS
if awk -v x="${r[ownership_over_floor]}" -v g="$GOAL" 'BEGIN { exit !(x <= g) }'; then
	verdict=PASS
fi
echo "goal: (ownership + objects) <= ${GOAL}x (task-file floor + object floor): $verdict (${r[ownership_over_floor]}x)"
