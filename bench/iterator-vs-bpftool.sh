#!/usr/bin/env bash
# Measures the agent's iterator collection mode on one population, in one
# run (the machine is shared: only figures measured side by side compare):
#
#   - the peer: `bpftool -j map show`, `bpftool -j prog show` and
#     `bpftool -j link show` back to back, RUNS times, median; with strace,
#     when installed, the system calls of one more run (not timed);
#   - bench/itercycle, in one process, TURNS turns of: the floor (BPF
#     iterators writing only IDs, bench/floor), the agent's iterator
#     programs read raw (the kernel side of a steady cycle), the agent's
#     decoder, and one steady cycle of the agent's collector (iterator
#     mode, tables for every object, no rate limit, 64 MiB budget, ownership
#     off like the floor: bench/holders-vs-floor.sh measures it); then the
#     first cycle of FIRST fresh collectors, and the iterator programs' own
#     run time (BPF_ENABLE_STATS, on only for that phase);
#   - bench/rss: the agent binary serving /metrics, after CYCLES cycles at a
#     1 s interval and SCRAPES scrapes: VmRSS, and its own
#     odigos_ebpf_collector_memory_usage_bytes; once with tables for every
#     object, once with the production profile's tables (no rate limit
#     either way); and bench/minexporter, a minimal client_golang exporter,
#     on the same schedule;
#
# and prints a table, the ratios, and PASS or MISS against the goals:
# steady cycle <= GOAL_FLOOR times the floor, >= GOAL_BPFTOOL times faster
# than bpftool, fewer than GOAL_SYSCALLS system calls per steady cycle.
# Everything it starts is stopped, and the population released, on exit,
# whatever happens.
#
# Environment (defaults in brackets): MAPS [10000], PROGRAMS [5000],
# LINKS [2000], FILL [0.5], RUNS [5] (bpftool), TURNS [21] (itercycle),
# FIRST [5], CYCLES [5], SCRAPES [5], GOAL_FLOOR [1.3], GOAL_BPFTOOL [30],
# GOAL_SYSCALLS [100], BPFTOOL [bpftool on $PATH, else /usr/sbin/bpftool],
# READY_TIMEOUT [300] (s).
#
# Needs root (bpftool lists with CAP_SYS_ADMIN; the agent needs CAP_BPF and
# CAP_PERFMON), Go and bpftool; not clang (the BPF objects are committed).
# Exit status: 0 when the measurement ran, whether the goals were met or
# not; 1 when it failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

MAPS="${MAPS:-10000}"
PROGRAMS="${PROGRAMS:-5000}"
LINKS="${LINKS:-2000}"
FILL="${FILL:-0.5}"
RUNS="${RUNS:-5}"
TURNS="${TURNS:-21}"
FIRST="${FIRST:-5}"
CYCLES="${CYCLES:-5}"
SCRAPES="${SCRAPES:-5}"
GOAL_FLOOR="${GOAL_FLOOR:-1.3}"
GOAL_BPFTOOL="${GOAL_BPFTOOL:-30}"
GOAL_SYSCALLS="${GOAL_SYSCALLS:-100}"
READY_TIMEOUT="${READY_TIMEOUT:-300}"

fail() {
	echo "iterator-vs-bpftool: $*" >&2
	exit 1
}

for v in MAPS PROGRAMS LINKS RUNS TURNS FIRST CYCLES SCRAPES GOAL_SYSCALLS READY_TIMEOUT; do
	[[ "${!v}" =~ ^[0-9]+$ ]] || fail "$v must be a whole number, got '${!v}'"
done
for v in GOAL_FLOOR GOAL_BPFTOOL FILL; do
	[[ "${!v}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || fail "$v must be a number, got '${!v}'"
done
((RUNS >= 1 && TURNS >= 1 && FIRST >= 1 && SCRAPES >= 1)) || fail "RUNS, TURNS, FIRST and SCRAPES must be at least 1"
[[ "$(id -u)" == 0 ]] || fail "run as root: bpftool lists every eBPF object with CAP_SYS_ADMIN"

# shellcheck source=bench/lib/peer.sh
source bench/lib/peer.sh
peer_setup

echo "building ebpf-loadgen, ebpf-metrics, bench/itercycle, bench/rss, bench/minexporter" >&2
go build -o "$work/" ./cmd/ebpf-loadgen ./cmd/ebpf-metrics ./bench/itercycle ./bench/rss ./bench/minexporter

hold_population
time_bpftool

# read_kv reads "key value" lines from file $2 into the associative array
# named by $1 ("metric NAME VALUE" lines become NAME → VALUE).
read_kv() {
	local -n into="$1"
	local key value rest
	while read -r key value rest; do
		if [[ "$key" == metric ]]; then
			into["$value"]="$rest"
		else
			# shellcheck disable=SC2034 # a nameref: the caller's array
			into["$key"]="$value"
		fi
	done <"$2"
}

tables_yaml="max_tracked_maps: $((MAPS + 4096))
max_tracked_programs: $((PROGRAMS + helpers + 4096))
max_tracked_links: $((LINKS + 4096))"

echo "timing the agent's iterator cycle against the floor, $TURNS turns" >&2
declare -A it
"$work/itercycle" -runs "$TURNS" -first "$FIRST" \
	-tables "$((MAPS + 4096)),$((PROGRAMS + helpers + 4096)),$((LINKS + 4096))" >"$work/itercycle.out"
read_kv it "$work/itercycle.out"
((it[objects] >= population)) || fail "the agent counted ${it[objects]} objects, fewer than the $population held"
[[ "${it[untracked]}" == 0 && "${it[unreadable]}" == 0 ]] ||
	fail "the agent left ${it[untracked]} objects untracked and ${it[unreadable]} unreadable: not a steady state"

# rss_of NAME ARRAY CONFIG runs the agent with the configuration file
# CONFIG under bench/rss, into the associative array named ARRAY.
rss_of() {
	local name="$1" config="$work/$1.yml"
	printf '%s\n' "$3" >"$config"
	echo "measuring the agent's memory ($name): $CYCLES cycles at 1s, $SCRAPES scrapes" >&2
	"$work/rss" -cycles-metric odigos_ebpf_collection_cycles_total -cycles "$CYCLES" -scrapes "$SCRAPES" \
		-metric odigos_ebpf_collector_memory_usage_bytes -metric odigos_ebpf_objects \
		-metric odigos_ebpf_tracked_objects -metric go_memstats_heap_inuse_bytes -- \
		"$work/ebpf-metrics" --profile=production --web.listen-address='{addr}' --collection.interval=1s \
		--collection.mode=iterator --config.file="$config" --log.level=warn >"$work/rss.$name"
	read_kv "$2" "$work/rss.$name"
}
declare -A big prod mini
rss_of big big "$tables_yaml
max_memory_bytes: 64MiB
max_syscalls_per_second: 0"
rss_of prod prod "max_syscalls_per_second: 0"
echo "measuring the minimal exporter's memory: ${CYCLES}s, $SCRAPES scrapes" >&2
"$work/rss" -cycles "$CYCLES" -scrapes "$SCRAPES" -metric go_memstats_heap_inuse_bytes -- "$work/minexporter" --web.listen-address='{addr}' >"$work/rss.mini"
read_kv mini "$work/rss.mini"
((${big[odigos_ebpf_objects]%.*} >= population)) || fail "the agent binary counted ${big[odigos_ebpf_objects]} objects, fewer than the $population held"

kernel="$(uname -r)"
cpus="$(nproc)"
bpftool_version="$("$BPFTOOL" version | awk 'NR == 1')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z "$(git status --porcelain -- internal cmd ':!*_test.go' 2>/dev/null)" ]] || commit="$commit+changes"
objects="${it[objects]}"
echo
echo "kernel $kernel, $cpus CPUs, $bpftool_version, $(go version | cut -d' ' -f3), commit $commit"
echo "population: $MAPS maps, $PROGRAMS programs (+$helpers helper), $LINKS links, fill $FILL, created in ${create_seconds}s;" \
	"the agent counted $objects objects (${it[maps]} maps, ${it[programs]} programs, ${it[links]} links)"
echo "bpftool: median of $RUNS runs; in-process figures: medians of $TURNS turns (first cycle: of $FIRST fresh collectors)"
echo "agent: objects only (max_owners 0, no holders pass: see bench/holders-vs-floor.sh); the exporters below run the profile, ownership on"
echo

# row NAME NANOSECONDS SYSCALLS BYTES ALLOCS prints one line of the table.
row() {
	awk -v name="$1" -v ns="$2" -v sc="$3" -v by="$4" -v al="$5" -v n="$objects" 'BEGIN {
		per_sc = (sc == "-") ? "-" : sprintf("%.4f", sc / n)
		printf "%-46s %11.3f %10.3f %11s %12s %10s %12s\n", name, ns / 1e6, ns / 1e3 / n, sc, per_sc, by, al }'
}
printf "%-46s %11s %10s %11s %12s %10s %12s\n" "" "pass (ms)" "µs/object" "syscalls" "syscalls/obj" "bytes" "allocs/cycle"
row "bpftool -j map+prog+link show" "$(awk -v ms="$bpftool_ms" 'BEGIN { print ms * 1e6 }')" "$bpftool_syscalls" "-" "-"
row "floor: iterators writing only IDs" "${it[floor_ns]}" "${it[floor_syscalls]}" "${it[floor_bytes]}" "-"
if [[ -n "${it[raw_ns]:-}" ]]; then
	row "agent's iterator programs, read raw" "${it[raw_ns]}" "${it[raw_syscalls]}" "${it[raw_bytes]}" "-"
fi
row "agent's iterators, records decoded" "${it[next_ns]}" "${it[next_syscalls]}" "-" "-"
row "agent steady cycle (iterator mode)" "${it[steady_ns]}" "${it[steady_syscalls]}" "-" "${it[steady_allocs]}"
row "agent first cycle (iterator mode)" "${it[first_ns]}" "${it[first_syscalls]}" "-" "${it[first_allocs]}"
echo
ms() { awk -v ns="$1" 'BEGIN { printf "%.3f", ns / 1e6 }'; }
echo "bpftool runs (ms): $(printf '%s\n' "${bpftool_us[@]}" | awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $1 / 1000 }')"
echo "floor min/median/max (ms): $(ms "${it[floor_min_ns]}") / $(ms "${it[floor_ns]}") / $(ms "${it[floor_max_ns]}")"
echo "steady min/median/max (ms): $(ms "${it[steady_min_ns]}") / $(ms "${it[steady_ns]}") / $(ms "${it[steady_max_ns]}")"
echo "first min/median/max (ms): $(ms "${it[first_min_ns]}") / $(ms "${it[first_ns]}") / $(ms "${it[first_max_ns]}")"
echo "over the floor, median of the per-turn ratios:" \
	"raw programs ${it[raw_over_floor]:--}, decoded ${it[next_over_floor]}, steady cycle ${it[steady_over_floor]}"
if [[ -n "${it[bpf_floor_ns_per_pass]:-}" ]]; then
	echo "BPF program run time per object (BPF_ENABLE_STATS, ${it[stats_passes]} passes; ns/run, maps / programs / links):" \
		"floor ${it[bpf_floor_maps_ns_per_run]} / ${it[bpf_floor_programs_ns_per_run]} / ${it[bpf_floor_links_ns_per_run]}," \
		"agent ${it[bpf_agent_maps_ns_per_run]:--} / ${it[bpf_agent_programs_ns_per_run]:--} / ${it[bpf_agent_links_ns_per_run]:--};" \
		"per pass: floor $(ms "${it[bpf_floor_ns_per_pass]}") ms, agent $(ms "${it[bpf_agent_ns_per_pass]:-0}") ms"
fi
if [[ "${it[foreign_stats_runs]}" != 0 ]]; then
	echo "warning: another process had BPF run-time statistics on during the turns (${it[foreign_stats_runs]} counted runs):" \
		"every program run cost ~75-100 ns more, the floor's and the agent's alike"
fi
echo

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "memory after $CYCLES cycles at 1s and $SCRAPES scrapes of /metrics, MiB: VmRSS = RssAnon + RssFile (the binary's"
echo "pages), VmHWM (peak), go_memstats_heap_inuse_bytes, and the agent's own odigos_ebpf_collector_memory_usage_bytes:"
printf "  %-50s %7s %8s %8s %7s %7s %10s %8s\n" "" VmRSS RssAnon RssFile VmHWM heap collector tracked
# mem NAME ARRAY prints one line of the memory table.
mem() {
	local -n m="$2"
	printf "  %-50s %7s %8s %8s %7s %7s %10s %8s\n" "$1" "$(mib "${m[vmrss_bytes]}")" "$(mib "${m[rssanon_bytes]}")" \
		"$(mib "${m[rssfile_bytes]}")" "$(mib "${m[vmhwm_bytes]}")" "$(mib "${m[go_memstats_heap_inuse_bytes]}")" \
		"$(if [[ -n "${m[odigos_ebpf_collector_memory_usage_bytes]:-}" ]]; then mib "${m[odigos_ebpf_collector_memory_usage_bytes]}"; else echo -; fi)" \
		"${m[odigos_ebpf_tracked_objects]:--}"
}
mem "agent, iterator mode, tables for every object" big
mem "agent, iterator mode, production profile" prod
mem "minimal client_golang exporter (bench/minexporter)" mini
echo "  agent - minimal exporter, VmRSS: $(mib "$((big[vmrss_bytes] - mini[vmrss_bytes]))") MiB (tables for every object)," \
	"$(mib "$((prod[vmrss_bytes] - mini[vmrss_bytes]))") MiB (production profile)"
echo

# verdict CONDITION prints PASS when the awk condition holds, else MISS.
verdict() {
	if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi
}
steady_floor="${it[steady_over_floor]}"
bpftool_steady="$(awk -v ms="$bpftool_ms" -v ns="${it[steady_ns]}" 'BEGIN { printf "%.1f", ms * 1e6 / ns }')"
bpftool_first="$(awk -v ms="$bpftool_ms" -v ns="${it[first_ns]}" 'BEGIN { printf "%.1f", ms * 1e6 / ns }')"
medians_ratio="$(awk -v a="${it[steady_ns]}" -v b="${it[floor_ns]}" 'BEGIN { printf "%.3f", a / b }')"
echo "goal: steady cycle <= ${GOAL_FLOOR}x the floor: $(verdict "$steady_floor <= $GOAL_FLOOR")" \
	"(${steady_floor}x, median of per-turn ratios; ratio of the medians ${medians_ratio}x)"
echo "goal: steady cycle >= ${GOAL_BPFTOOL}x faster than bpftool: $(verdict "$bpftool_steady >= $GOAL_BPFTOOL") (${bpftool_steady}x)"
echo "goal: fewer than $GOAL_SYSCALLS system calls per steady cycle: $(verdict "${it[steady_syscalls]} < $GOAL_SYSCALLS")" \
	"(${it[steady_syscalls]})"
echo "first cycle: $(ms "${it[first_ns]}") ms, ${bpftool_first}x faster than bpftool; ${it[first_syscalls]} system calls"

release || fail "ebpf-loadgen failed to release the population"
