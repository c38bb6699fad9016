#!/usr/bin/env bash
# The agent binary itself, at a 100 ms interval, for CYCLES cycles while a
# child of bench/soak holds a population and churns objects at RATE per
# second; scraped over HTTP every second. Every SAMPLE seconds it prints the
# agent's cycles, VmRSS, RssAnon, fds and goroutines, and errors counted; at
# the end the RSS drift: the median of the last tenth of the samples against
# the median of the first tenth, after WARMUP cycles (docs/reliability.md).
#
#   sudo bench/soak-binary.sh                          # iterator mode, 3,000 cycles (~5 min)
#   MODE=syscall CYCLES=10000 sudo -E bench/soak-binary.sh
#
# Exit status: 0 when it ran (PASS or MISS on the drift), 1 when the agent or
# the churn failed, or an error was counted.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-iterator}
CYCLES=${CYCLES:-3000}
WARMUP=${WARMUP:-300}
RATE=${RATE:-2000}
SAMPLE=${SAMPLE:-10}
MAX_DRIFT=${MAX_DRIFT:-5}
ADDR=${ADDR:-127.0.0.1:19436}

dir=$(mktemp -d)
agent_pid= churn_pid=
cleanup() {
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
	[ -n "$churn_pid" ] && kill "$churn_pid" 2>/dev/null && wait "$churn_pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

go build -o "$dir/ebpf-metrics" ./cmd/ebpf-metrics
go build -o "$dir/soak" ./bench/soak

"$dir/soak" -churn-child -churn-rate "$RATE" -population 1000,200,50 >"$dir/churn.out" &
churn_pid=$!
for _ in $(seq 100); do grep -q ready "$dir/churn.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$dir/churn.out" || { echo "the churn child did not start"; exit 1; }

cat >"$dir/config.yaml" <<EOF
max_syscalls_per_second: 0
max_tracked_maps: 20000
max_tracked_programs: 10000
max_tracked_links: 5000
max_memory_bytes: 64MiB
EOF
"$dir/ebpf-metrics" --web.listen-address="$ADDR" --collection.interval=100ms --collection.mode="$MODE" \
	--config.file="$dir/config.yaml" 2>"$dir/agent.log" &
agent_pid=$!

metric() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }' "$dir/scrape"; }
status() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$agent_pid/status"; }

echo "soak-binary: mode $MODE, $CYCLES cycles every 100ms, churn $RATE objects/s, kernel $(uname -r), $(nproc) CPUs"
printf '%8s %8s %9s %9s %5s %6s %7s\n' elapsed cycles rss_kib anon_kib fds gorout errors
start=$(date +%s)
: >"$dir/samples"
cycles=0
while [ "$cycles" -lt "$CYCLES" ]; do
	kill -0 "$agent_pid" 2>/dev/null || { echo "the agent exited:"; cat "$dir/agent.log"; exit 1; }
	if curl -sf "http://$ADDR/metrics" >"$dir/scrape"; then
		cycles=$(metric odigos_ebpf_collection_cycles_total)
		now=$(($(date +%s) - start))
		if [ $((now % SAMPLE)) -eq 0 ] && [ "$now" != "${last:-}" ]; then
			last=$now
			line=$(printf '%8d %8d %9d %9d %5d %6d %7d' "$now" "$cycles" "$(status VmRSS)" "$(status RssAnon)" \
				"$(ls "/proc/$agent_pid/fd" | wc -l)" "$(metric go_goroutines)" "$(metric odigos_ebpf_collection_errors_total)")
			echo "$line"
			echo "$line" >>"$dir/samples"
		fi
	fi
	sleep 1
done
errors=$(metric odigos_ebpf_collection_errors_total)

kill "$churn_pid"
wait "$churn_pid" || true
churn_pid=
tail -1 "$dir/churn.out" | sed 's/^/churn: /'

# Medians of the first and last tenth of the samples after the warm-up.
awk -v warmup="$WARMUP" -v limit="$MAX_DRIFT" '
	$2 >= warmup { n++; rss[n] = $3; anon[n] = $4; fds[n] = $5; g[n] = $6 }
	function median(a, from, to,   i, j, k, v, m) {
		m = 0
		for (i = from; i <= to; i++) v[++m] = a[i]
		for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { k = v[i]; v[i] = v[j]; v[j] = k }
		return v[int((m + 1) / 2)]
	}
	END {
		if (n < 2) { print "too few samples"; exit 1 }
		t = int(n / 10); if (t < 1) t = 1
		e = median(rss, 1, t); l = median(rss, n - t + 1, n)
		ea = median(anon, 1, t); la = median(anon, n - t + 1, n)
		lo = hi = rss[1]; for (i = 1; i <= n; i++) { if (rss[i] < lo) lo = rss[i]; if (rss[i] > hi) hi = rss[i] }
		d = (l - e) * 100 / e
		printf "fds %d -> %d, goroutines %d -> %d\n", fds[1], fds[n], g[1], g[n]
		printf "medians of the first and last %d of %d samples after cycle %d:\n", t, n, warmup
		printf "  RSS     %6d -> %6d KiB (%+.2f%%), range %d..%d KiB\n", e, l, d, lo, hi
		printf "  RssAnon %6d -> %6d KiB (%+.2f%%)\n", ea, la, (la - ea) * 100 / ea
		printf "RSS drift %+.2f%%: %s (limit %d%%)\n", d, (d <= limit && d >= -limit) ? "PASS" : "MISS", limit
	}' "$dir/samples"
if [ "$errors" != 0 ]; then
	echo "$errors errors counted:"
	grep 'kernel operation failed' "$dir/agent.log" | head
	exit 1
fi
