#!/usr/bin/env bash
# Measures what the agent costs to start and to keep, against peers
# measured in the same run, on one population held by ebpf-loadgen:
#
#   - `ebpf-metrics --once` (auto mode, production profile: the README's
#     default, rate limit included) against `bpftool -j map show`, `prog
#     show` and `link show` back to back: wall time, median of RUNS each;
#   - the time from the agent's exec to its first published snapshot (the
#     log line "first collection published"), median of RUNS starts, with
#     the agent's own breakdown (collector ready, first cycle);
#   - the resident memory of the agent serving /metrics (production
#     profile) after CYCLES cycles at 1 s and SCRAPES scrapes, and its peak,
#     against bench/minexporter, a minimal client_golang exporter, on the
#     same schedule (bench/rss).
#
# It prints the figures, the three ratios and PASS or MISS against the goals
# (GOAL_ONCE [10]x bpftool, bar BAR_ONCE [5]; first snapshot <= GOAL_START_MS
# [60]; steady RSS <= GOAL_RSS [1.3]x the minimal exporter, bar BAR_RSS
# [1.5]; peak <= GOAL_PEAK [1.2]x steady).
#
# Environment (defaults in brackets): MAPS [10000], PROGRAMS [5000], LINKS
# [2000], FILL [0.5], RUNS [7], CYCLES [5], SCRAPES [5], BPFTOOL, READY_TIMEOUT
# [300] (s). Needs root, Go and bpftool. Exit status 0 when the measurement
# ran, whatever the verdicts; 1 when it failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

MAPS="${MAPS:-10000}"
PROGRAMS="${PROGRAMS:-5000}"
LINKS="${LINKS:-2000}"
FILL="${FILL:-0.5}"
RUNS="${RUNS:-7}"
CYCLES="${CYCLES:-5}"
SCRAPES="${SCRAPES:-5}"
GOAL_ONCE="${GOAL_ONCE:-10}"
BAR_ONCE="${BAR_ONCE:-5}"
GOAL_START_MS="${GOAL_START_MS:-60}"
GOAL_RSS="${GOAL_RSS:-1.3}"
BAR_RSS="${BAR_RSS:-1.5}"
GOAL_PEAK="${GOAL_PEAK:-1.2}"
READY_TIMEOUT="${READY_TIMEOUT:-300}"

fail() {
	echo "footprint: $*" >&2
	exit 1
}

# shellcheck source=bench/lib/peer.sh
source bench/lib/peer.sh
peer_setup

echo "building ebpf-loadgen, ebpf-metrics, bench/rss, bench/minexporter" >&2
go build -o "$work/" ./cmd/ebpf-loadgen ./cmd/ebpf-metrics ./bench/rss ./bench/minexporter

hold_population
time_bpftool

# --once: exec to exit, the text on stdout included.
echo "timing ebpf-metrics --once, $RUNS runs" >&2
once_us=()
for ((i = 0; i < RUNS; i++)); do
	start="$(now_us)"
	"$work/ebpf-metrics" --once --log.level=error >"$work/once.prom"
	end="$(now_us)"
	once_us+=("$((end - start))")
done
once_ms="$(median "${once_us[@]}" | awk '{ printf "%.3f", $1 / 1000 }')"
# Page faults of one more run: on a VM, first touches of memory are a
# large part of start-up (bench/faultcost prints what one costs).
once_faults="n/a (no /usr/bin/time)"
if [[ -x /usr/bin/time ]]; then
	once_faults="$( { /usr/bin/time -f '%R' "$work/ebpf-metrics" --once --log.level=error >/dev/null; } 2>&1 | tail -1)"
fi
objects="$(awk '/^odigos_ebpf_objects\{/ { n += $2 } END { print n + 0 }' "$work/once.prom")"
((objects >= population)) || fail "--once counted $objects objects, fewer than the $population held"

# duration_ms KEY LINE prints the duration KEY of a JSON log line ("62.8ms",
# "1.2s", "850µs") in milliseconds.
duration_ms() {
	sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" <<<"$2" | awk '{
		v = $1 + 0; u = $1; sub(/^[0-9.]+/, "", u)
		f = (u == "s") ? 1000 : (u == "ms") ? 1 : (u == "µs" || u == "us") ? 0.001 : (u == "ns") ? 1e-6 : 0
		printf "%.1f", v * f }'
}

# Exec to the first published snapshot: the agent logs it, with the time.
echo "timing exec to the first snapshot, $RUNS starts" >&2
start_us=() ready_ms=() cycle_ms=() start_faults=()
for ((i = 0; i < RUNS; i++)); do
	: >"$work/start.log"
	start="$(now_us)"
	"$work/ebpf-metrics" --web.listen-address=127.0.0.1:0 --log.format=json 2>"$work/start.log" &
	pid=$!
	# The time comes from the log line; polling every 10 ms instead (a grep
	# and a sleep forked each time) took CPU from the agent starting.
	for ((w = 0; w < 30; w++)); do
		sleep 0.1
		grep -q '"first collection published"' "$work/start.log" && break
	done
	# Minor faults (field 10 of stat) a few ms after the first snapshot.
	start_faults+=("$(awk '{ print $10 }' "/proc/$pid/stat" 2>/dev/null || echo 0)")
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" || true
	line="$(grep '"first collection published"' "$work/start.log")" || fail "no first snapshot within 3 s"
	t="$(sed -n 's/.*"time":"\([^"]*\)".*/\1/p' <<<"$line")"
	published="$(date -d "$t" +%s%6N)"
	start_us+=("$((published - start))")
	ready_ms+=("$(duration_ms collector_ready "$line")")
	cycle_ms+=("$(duration_ms first_cycle "$line")")
done
start_ms="$(median "${start_us[@]}" | awk '{ printf "%.1f", $1 / 1000 }')"

# Resident memory, steady and peak.
read_kv() {
	local -n into="$1"
	local key value rest
	while read -r key value rest; do
		if [[ "$key" == metric ]]; then into["$value"]="$rest"; else into["$key"]="$value"; fi
	done <"$2"
}
declare -A agent mini
echo "measuring the agent's memory: $CYCLES cycles at 1s, $SCRAPES scrapes" >&2
printf 'max_syscalls_per_second: 0\n' >"$work/prod.yml"
"$work/rss" -cycles-metric odigos_ebpf_collection_cycles_total -cycles "$CYCLES" -scrapes "$SCRAPES" \
	-metric odigos_ebpf_collector_memory_usage_bytes -- \
	"$work/ebpf-metrics" --web.listen-address='{addr}' --collection.interval=1s --log.level=warn \
	--config.file="$work/prod.yml" >"$work/rss.agent"
read_kv agent "$work/rss.agent"
echo "measuring the minimal exporter's memory: ${CYCLES}s, $SCRAPES scrapes" >&2
"$work/rss" -cycles "$CYCLES" -scrapes "$SCRAPES" -- "$work/minexporter" --web.listen-address='{addr}' >"$work/rss.mini"
read_kv mini "$work/rss.mini"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }
once_ratio="$(awk -v b="$bpftool_ms" -v o="$once_ms" 'BEGIN { printf "%.2f", b / o }')"
rss_ratio="$(awk -v a="${agent[vmrss_bytes]}" -v m="${mini[vmrss_bytes]}" 'BEGIN { printf "%.2f", a / m }')"
peak_ratio="$(awk -v p="${agent[vmhwm_bytes]}" -v a="${agent[vmrss_bytes]}" 'BEGIN { printf "%.2f", p / a }')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z "$(git status --porcelain -- internal cmd ':!*_test.go' 2>/dev/null)" ]] || commit="$commit+changes"

echo
echo "kernel $(uname -r), $(nproc) CPUs, $("$BPFTOOL" version | awk 'NR == 1'), $(go version | cut -d' ' -f3), commit $commit"
echo "population: $MAPS maps, $PROGRAMS programs (+$helpers helper), $LINKS links, fill $FILL; --once counted $objects objects"
echo
echo "bpftool -j map+prog+link show (ms): median $bpftool_ms of $(printf '%s\n' "${bpftool_us[@]}" | awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 / 1000 }')"
echo "ebpf-metrics --once (ms):          median $once_ms of $(printf '%s\n' "${once_us[@]}" | awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 / 1000 }')"
echo "exec to first snapshot (ms):       median $start_ms of $(printf '%s\n' "${start_us[@]}" | awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 / 1000 }')"
echo "  of which collector ready (ms):   $(printf '%s ' "${ready_ms[@]}")"
echo "  and first cycle (ms):            $(printf '%s ' "${cycle_ms[@]}")"
echo "minor page faults: --once $once_faults; serving agent at its first snapshot $(median "${start_faults[@]}")"
echo "memory (MiB): agent VmRSS $(mib "${agent[vmrss_bytes]}") (anon $(mib "${agent[rssanon_bytes]}"), file $(mib "${agent[rssfile_bytes]}")), peak $(mib "${agent[vmhwm_bytes]}"), budget meter $(mib "${agent[odigos_ebpf_collector_memory_usage_bytes]}");" \
	"minimal exporter VmRSS $(mib "${mini[vmrss_bytes]}") (anon $(mib "${mini[rssanon_bytes]}"), file $(mib "${mini[rssfile_bytes]}"))"
echo
echo "goal: --once >= ${GOAL_ONCE}x faster than bpftool (bar ${BAR_ONCE}x): ${once_ratio}x:" \
	"$(verdict "$once_ratio >= $GOAL_ONCE") (bar: $(verdict "$once_ratio >= $BAR_ONCE"))"
echo "goal: first snapshot within ${GOAL_START_MS} ms of exec: ${start_ms} ms: $(verdict "$start_ms <= $GOAL_START_MS")"
echo "goal: steady RSS <= ${GOAL_RSS}x the minimal exporter (bar ${BAR_RSS}x): ${rss_ratio}x:" \
	"$(verdict "$rss_ratio <= $GOAL_RSS") (bar: $(verdict "$rss_ratio <= $BAR_RSS"))"
echo "goal: peak RSS <= ${GOAL_PEAK}x steady: ${peak_ratio}x: $(verdict "$peak_ratio <= $GOAL_PEAK")"

release || fail "ebpf-loadgen failed to release the population"
