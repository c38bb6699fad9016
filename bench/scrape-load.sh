#!/usr/bin/env bash
# Scrapes the agent on loopback with wrk, at 1 and at CONNS connections, and
# a minimal Go server serving the same bytes (bench/staticserver: the limit
# for a cached endpoint) in the same run, interleaved, RUNS times; reports
# the medians of p50/p99 latency and requests per second, failed requests,
# 503s, and the agent's collection cycle durations idle and under load.
#
# It builds the agent, ebpf-loadgen and bench/staticserver, holds a
# population with ebpf-loadgen, starts the agent (iterators where the kernel
# has them, a cycle every INTERVAL, no rate limit, tables that hold the
# population), copies one of its scrapes into the static server, then:
#   - idle: the agent's cycles over DURATION with no scrape but the
#     script's own two;
#   - per run: wrk -c 1 and wrk -c CONNS against the agent and the static
#     server, one after the other; the agent's cycles during its CONNS run;
#   - once: wrk -c 1 as Prometheus asks (OpenMetrics, gzip);
#   - once: a second agent whose in-flight limit is below CONNS
#     (LOW_MAX_REQUESTS): every non-2xx must be a 503.
# Goals: p50 below GOAL_P50_MS at 1 connection; at CONNS connections at
# least GOAL_RATIO of the static server's requests per second. Everything
# started is stopped on exit, and the population released.
#
# Environment (defaults in brackets): MAPS [1400], PROGRAMS [400], LINKS
# [200], FILL [0.5], DURATION [10s], CONNS [64], THREADS [2], RUNS [3],
# INTERVAL [500ms], MAX_REQUESTS [CONNS], LOW_MAX_REQUESTS [4], GOAL_P50_MS
# [1], GOAL_RATIO [0.5], READY_TIMEOUT [120] (s), WRK_TIMEOUT [10s: a
# slower request counts as failed], AGENT_BIN [built from this tree: set it
# to measure another build of the agent].
#
# Needs root (the agent and ebpf-loadgen load BPF), Go and wrk (Debian:
# apt-get install wrk). Traffic stays on 127.0.0.1. Exit status: 0 when the
# measurement ran, goals met or not; 1 when it failed (including any failed
# request, or a non-503 error above the in-flight limit).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

MAPS="${MAPS:-1400}"
PROGRAMS="${PROGRAMS:-400}"
LINKS="${LINKS:-200}"
FILL="${FILL:-0.5}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
RUNS="${RUNS:-3}"
INTERVAL="${INTERVAL:-500ms}"
MAX_REQUESTS="${MAX_REQUESTS:-$CONNS}"
LOW_MAX_REQUESTS="${LOW_MAX_REQUESTS:-4}"
GOAL_P50_MS="${GOAL_P50_MS:-1}"
GOAL_RATIO="${GOAL_RATIO:-0.5}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"
# A request slower than this is counted as failed (Prometheus' default
# scrape timeout; wrk's own default, 2s, counts a busy machine's stalls).
WRK_TIMEOUT="${WRK_TIMEOUT:-10s}"

fail() {
	echo "scrape-load: $*" >&2
	exit 1
}

for v in MAPS PROGRAMS LINKS CONNS THREADS RUNS MAX_REQUESTS LOW_MAX_REQUESTS READY_TIMEOUT; do
	[[ "${!v}" =~ ^[0-9]+$ ]] || fail "$v must be a whole number, got '${!v}'"
done
((RUNS >= 1 && CONNS >= 1)) || fail "RUNS and CONNS must be at least 1"
[[ "$(id -u)" == 0 ]] || fail "run as root: the agent and ebpf-loadgen load BPF programs"
command -v wrk >/dev/null || fail "wrk not found (Debian: apt-get install wrk)"
command -v curl >/dev/null || fail "curl not found"

work="$(mktemp -d)"
pids=()

cleanup() {
	local status=$? pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for FILE PATTERN PID WHAT waits until FILE has a line matching
# PATTERN, failing if PID exits first or READY_TIMEOUT passes.
wait_for() {
	local file="$1" pattern="$2" pid="$3" what="$4" waited
	for ((waited = 0; ; waited++)); do
		grep -q "$pattern" "$file" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || { cat "$file" "$work"/*.err >&2 2>/dev/null; fail "$what exited before it was ready"; }
		((waited < READY_TIMEOUT * 10)) || fail "$what not ready after ${READY_TIMEOUT}s"
		sleep 0.1
	done
}

echo "building the agent, ebpf-loadgen and bench/staticserver" >&2
go build -o "$work/" ./cmd/ebpf-metrics ./cmd/ebpf-loadgen ./bench/staticserver
if [[ -n "${AGENT_BIN:-}" ]]; then
	cp "$AGENT_BIN" "$work/ebpf-metrics"
fi

echo "creating $MAPS maps, $PROGRAMS programs, $LINKS links (fill $FILL)" >&2
"$work/ebpf-loadgen" --maps "$MAPS" --programs "$PROGRAMS" --links "$LINKS" --fill "$FILL" \
	>"$work/ready" 2>"$work/loadgen.err" &
pids+=("$!")
wait_for "$work/ready" '^{"ready":true' "$!" ebpf-loadgen

cat >"$work/config.yaml" <<EOF
max_syscalls_per_second: 0
max_memory_bytes: 64MiB
max_tracked_maps: $((MAPS + 4096))
max_tracked_programs: $((PROGRAMS + 4096))
max_tracked_links: $((LINKS + 4096))
EOF

# start_agent NAME MAX_REQUESTS starts an agent on a free loopback port and
# sets the variable NAME to its address.
start_agent() {
	local -n addr="$1"
	"$work/ebpf-metrics" --web.listen-address=127.0.0.1:0 --config.file="$work/config.yaml" \
		--collection.interval="$INTERVAL" --web.max-requests="$2" >"$work/$1.out" 2>"$work/$1.err" &
	local pid=$!
	pids+=("$pid")
	wait_for "$work/$1.err" 'msg="Listening on"' "$pid" "the agent"
	addr="$(sed -n 's/.*msg="Listening on" address=\([^ ]*\).*/\1/p' "$work/$1.err" | head -n 1)"
	local waited
	for ((waited = 0; ; waited++)); do
		[[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/-/ready")" == 200 ]] && break
		((waited < READY_TIMEOUT * 10)) || fail "the agent is not ready after ${READY_TIMEOUT}s"
		sleep 0.1
	done
}

echo "starting the agent (interval $INTERVAL, --web.max-requests=$MAX_REQUESTS)" >&2
start_agent agent "$MAX_REQUESTS"
curl -s "http://$agent/metrics" >"$work/body.prom"
objects="$(awk '/^odigos_ebpf_objects\{/ { n += $2 } END { print n }' "$work/body.prom")"
population=$((MAPS + PROGRAMS + LINKS))
((objects >= population)) || fail "the agent counts $objects objects, fewer than the $population held"

"$work/staticserver" -listen 127.0.0.1:0 -body "$work/body.prom" >"$work/static.out" 2>"$work/static.err" &
pids+=("$!")
wait_for "$work/static.out" '^127.0.0.1:' "$!" "the static server"
static="$(head -n 1 "$work/static.out")"

# cycles prints "sum count overruns limit_hits" of the agent's cycles:
# its cycle duration histogram, overruns and memory-limit hits.
cycles() {
	curl -s "http://$1/metrics" | awk '
		/^odigos_ebpf_collection_duration_seconds_sum / { s = $2 }
		/^odigos_ebpf_collection_duration_seconds_count / { c = $2 }
		/^odigos_ebpf_collection_overruns_total / { o = $2 }
		/^odigos_ebpf_collection_memory_limit_hit_total / { m = $2 }
		END { printf "%s %s %s %s\n", s, c, o, m }'
}

# mean_cycle_ms BEFORE AFTER prints, between two samples of cycles, the
# mean cycle duration in milliseconds, the number of cycles, and the
# overruns and memory-limit hits.
mean_cycle_ms() {
	awk -v b="$1" -v a="$2" 'BEGIN {
		split(b, x, " "); split(a, y, " ")
		n = y[2] - x[2]
		if (n <= 0) { printf "- 0 %d %d\n", y[3] - x[3], y[4] - x[4]; exit }
		printf "%.3f %d %d %d\n", (y[1] - x[1]) * 1000 / n, n, y[3] - x[3], y[4] - x[4] }'
}

# wrk_run NAME URL CONNECTIONS [wrk options] runs wrk and prints
# "rps p50_ms p99_ms requests non2xx errors".
wrk_run() {
	local name="$1" url="$2" c="$3" t
	shift 3
	t=$((c < THREADS ? c : THREADS))
	wrk -t "$t" -c "$c" -d "$DURATION" --timeout "$WRK_TIMEOUT" --latency "$@" "$url" >"$work/$name.wrk" 2>&1 || {
		cat "$work/$name.wrk" >&2
		fail "wrk failed against $url"
	}
	awk '
		function ms(v) {
			if (v ~ /us$/) return v / 1000
			if (v ~ /ms$/) return v + 0
			if (v ~ /s$/) return v * 1000
			return v
		}
		/^ +50%/ { p50 = ms($2) }
		/^ +99%/ { p99 = ms($2) }
		/requests in/ { n = $1 }
		/Non-2xx or 3xx responses:/ { bad = $NF }
		/Socket errors:/ { gsub(",", ""); errs = $4 + $6 + $8 + $10; print $0 >"/dev/stderr" }
		/^Requests\/sec:/ { rps = $2 }
		END { printf "%s %.3f %.3f %d %d %d\n", rps, p50, p99, n, bad, errs }' "$work/$name.wrk"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Let the agent settle, then measure idle cycles.
sleep 2
echo "idle: the agent's cycles over $DURATION" >&2
before="$(cycles "$agent")"
sleep "${DURATION%s}"
read -r idle_ms idle_n _ _ <<<"$(mean_cycle_ms "$before" "$(cycles "$agent")")"

declare -A col
keys=(a1_rps a1_p50 a1_p99 aN_rps aN_p50 aN_p99 s1_rps s1_p50 s1_p99 sN_rps sN_p50 sN_p99 one_ms load_ms)
for k in "${keys[@]}"; do col[$k]=""; done
failed=0
static_failed=0
non2xx=0
load_cycles=0
one_cycles=0
overruns=0
limit_hits=0
for ((run = 1; run <= RUNS; run++)); do
	echo "run $run/$RUNS: agent and static server, 1 and $CONNS connections, $DURATION each" >&2
	before="$(cycles "$agent")"
	read -r rps p50 p99 n bad errs <<<"$(wrk_run "a1.$run" "http://$agent/metrics" 1)"
	read -r ms nc no nm <<<"$(mean_cycle_ms "$before" "$(cycles "$agent")")"
	col[a1_rps]+="$rps " col[a1_p50]+="$p50 " col[a1_p99]+="$p99 " col[one_ms]+="$ms "
	one_cycles=$((one_cycles + nc)) overruns=$((overruns + no)) limit_hits=$((limit_hits + nm))
	failed=$((failed + errs)) non2xx=$((non2xx + bad))
	read -r rps p50 p99 n bad errs <<<"$(wrk_run "s1.$run" "http://$static/metrics" 1)"
	col[s1_rps]+="$rps " col[s1_p50]+="$p50 " col[s1_p99]+="$p99 "
	static_failed=$((static_failed + errs))
	before="$(cycles "$agent")"
	read -r rps p50 p99 n bad errs <<<"$(wrk_run "aN.$run" "http://$agent/metrics" "$CONNS")"
	read -r ms nc no nm <<<"$(mean_cycle_ms "$before" "$(cycles "$agent")")"
	col[aN_rps]+="$rps " col[aN_p50]+="$p50 " col[aN_p99]+="$p99 " col[load_ms]+="$ms "
	load_cycles=$((load_cycles + nc)) overruns=$((overruns + no)) limit_hits=$((limit_hits + nm))
	failed=$((failed + errs)) non2xx=$((non2xx + bad))
	read -r rps p50 p99 n bad errs <<<"$(wrk_run "sN.$run" "http://$static/metrics" "$CONNS")"
	col[sN_rps]+="$rps " col[sN_p50]+="$p50 " col[sN_p99]+="$p99 "
	static_failed=$((static_failed + errs))
done
runs_aN="${col[aN_rps]}" runs_sN="${col[sN_rps]}"
for k in "${keys[@]}"; do
	# shellcheck disable=SC2086 # a list of numbers
	col[$k]="$(median ${col[$k]})"
done

echo "Prometheus' scrape (OpenMetrics, gzip) at 1 connection" >&2
read -r prom_rps prom_p50 prom_p99 _ prom_bad prom_errs <<<"$(wrk_run prom "http://$agent/metrics" 1 \
	-H 'Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' \
	-H 'Accept-Encoding: gzip')"
failed=$((failed + prom_errs)) non2xx=$((non2xx + prom_bad))
gz_bytes="$(curl -s -H 'Accept-Encoding: gzip' "http://$agent/metrics" | wc -c)"

echo "over the limit: a second agent with --web.max-requests=$LOW_MAX_REQUESTS, $CONNS connections" >&2
start_agent low "$LOW_MAX_REQUESTS"
read -r low_rps _ _ low_n low_bad low_errs <<<"$(wrk_run low "http://$low/metrics" "$CONNS")"
# wrk counts every non-2xx; the agent's own counter says which code.
low_503="$(curl -s "http://$low/metrics" | awk -F' ' '/^promhttp_metric_handler_requests_total\{code="503"\}/ { print $2 }')"
low_500="$(curl -s "http://$low/metrics" | awk -F' ' '/^promhttp_metric_handler_requests_total\{code="500"\}/ { print $2 }')"

ratio="$(awk -v a="${col[aN_rps]}" -v s="${col[sN_rps]}" 'BEGIN { printf "%.2f", a / s }')"
verdict() { if awk -v ok="$1" 'BEGIN { exit !ok }'; then echo PASS; else echo MISS; fi; }
p50_goal="$(verdict "$(awk -v p="${col[a1_p50]}" -v g="$GOAL_P50_MS" 'BEGIN { print (p < g) }')")"
rps_goal="$(verdict "$(awk -v r="$ratio" -v g="$GOAL_RATIO" 'BEGIN { print (r >= g) }')")"

echo
echo "kernel $(uname -r), $(nproc) CPUs, $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2), $(go version | cut -d' ' -f3)"
echo "population: $MAPS maps, $PROGRAMS programs, $LINKS links; the agent counts $objects objects;" \
	"body $(wc -c <"$work/body.prom") bytes (gzip: $gz_bytes); interval $INTERVAL; --web.max-requests=$MAX_REQUESTS"
echo "medians of $RUNS runs of $DURATION each; wrk -t min(c,$THREADS) -c c; keep-alive; loopback"
echo
printf "%-36s %12s %10s %10s\n" "" "requests/s" "p50 (ms)" "p99 (ms)"
printf "%-36s %12s %10s %10s\n" "agent, 1 connection" "${col[a1_rps]}" "${col[a1_p50]}" "${col[a1_p99]}"
printf "%-36s %12s %10s %10s\n" "static server, 1 connection" "${col[s1_rps]}" "${col[s1_p50]}" "${col[s1_p99]}"
printf "%-36s %12s %10s %10s\n" "agent, $CONNS connections" "${col[aN_rps]}" "${col[aN_p50]}" "${col[aN_p99]}"
printf "%-36s %12s %10s %10s\n" "static server, $CONNS connections" "${col[sN_rps]}" "${col[sN_p50]}" "${col[sN_p99]}"
printf "%-36s %12s %10s %10s\n" "agent, 1 connection, OpenMetrics+gzip" "$prom_rps" "$prom_p50" "$prom_p99"
echo "runs at $CONNS connections, requests/s: agent ${runs_aN% }; static server ${runs_sN% }"
echo
echo "failed requests (socket errors, or slower than $WRK_TIMEOUT) in all agent runs: $failed (static server: $static_failed);" \
	"non-2xx at --web.max-requests=$MAX_REQUESTS: $non2xx"
echo "over the limit (--web.max-requests=$LOW_MAX_REQUESTS, $CONNS connections): $low_n requests, $low_rps/s," \
	"non-2xx $low_bad (503: ${low_503:-0}, 500: ${low_500:-0}), socket errors $low_errs"
echo "collection cycle, mean: idle ${idle_ms} ms ($idle_n cycles); under 1 connection ${col[one_ms]} ms ($one_cycles cycles);" \
	"under $CONNS connections ${col[load_ms]} ms ($load_cycles cycles); medians of runs"
echo "under load: $overruns cycle overruns, $limit_hits memory-limit hits"
echo
echo "goal: p50 < ${GOAL_P50_MS} ms at 1 connection: $p50_goal (${col[a1_p50]} ms)"
echo "goal: at $CONNS connections >= ${GOAL_RATIO} x the static server's requests/s: $rps_goal (${ratio}x)"

((failed == 0)) || fail "$failed requests failed"
((non2xx == 0)) || fail "$non2xx non-2xx responses below the in-flight limit"
((low_errs == 0)) || fail "$low_errs requests failed above the in-flight limit"
# The agent's 503 count may exceed wrk's non-2xx by the requests still in
# flight when wrk stopped; it can never be lower, and no 500 is allowed.
awk -v bad="$low_bad" -v s="${low_503:-0}" -v e="${low_500:-0}" 'BEGIN { exit !(bad <= s && e == 0) }' ||
	fail "above the in-flight limit, $low_bad non-2xx but ${low_503:-0} 503s and ${low_500:-0} 500s"
