# shellcheck shell=bash disable=SC2034 # the variables set here are the callers'
# Sourced by bench/*-vs-bpftool.sh: what they share. A population held by
# ebpf-loadgen, released on exit whatever happens, and bpftool, the peer,
# timed on it.
#
# The caller defines fail() and MAPS, PROGRAMS, LINKS, FILL, RUNS and
# READY_TIMEOUT (validated), and may set BPFTOOL. peer_setup sets BPFTOOL
# and work (a temporary directory, where the caller builds ebpf-loadgen);
# hold_population sets create_seconds, helpers and population;
# time_bpftool sets bpftool_us, bpftool_ms and bpftool_syscalls.

# peer_setup finds bpftool, makes the work directory and installs the
# traps that release the population and remove it on exit.
peer_setup() {
	if [[ -z "${BPFTOOL:-}" ]]; then
		BPFTOOL="$(command -v bpftool || true)"
		[[ -n "$BPFTOOL" ]] || BPFTOOL=/usr/sbin/bpftool
	fi
	[[ -x "$BPFTOOL" ]] || fail "bpftool not found (set BPFTOOL)"
	work="$(mktemp -d)"
	loadgen_pid=""
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# release stops ebpf-loadgen with SIGTERM and waits for it to release the
# population; it fails when the release did.
release() {
	local pid="$loadgen_pid" status=0
	loadgen_pid=""
	[[ -n "$pid" ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" || status=$?
	cat "$work/loadgen.err" >&2
	return "$status"
}

# The Go programs run in the foreground and release what they load when
# they exit (a signal to the script reaches them too: same process group).
# Only ebpf-loadgen runs in the background.
cleanup() {
	local status=$?
	release || status=1
	rm -rf "$work"
	exit "$status"
}

# hold_population starts $work/ebpf-loadgen in the background and waits
# until its population exists and bpftool lists all of it.
hold_population() {
	local waited status n kind listed=0
	echo "creating $MAPS maps, $PROGRAMS programs, $LINKS links (fill $FILL)" >&2
	"$work/ebpf-loadgen" --maps "$MAPS" --programs "$PROGRAMS" --links "$LINKS" --fill "$FILL" \
		>"$work/ready" 2>"$work/loadgen.err" &
	loadgen_pid=$!
	for ((waited = 0; ; waited++)); do
		if grep -q '^{"ready":true' "$work/ready"; then
			break
		fi
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

	# The peer lists what the population holds, or the comparison means nothing.
	for kind in map prog link; do
		n="$("$BPFTOOL" -j "$kind" show | grep -o '"id":' | wc -l)"
		listed=$((listed + n))
	done
	((listed >= population)) || fail "bpftool lists $listed objects, fewer than the $population held"
}

# now_us prints the wall clock in microseconds, without forking.
now_us() {
	local t="${EPOCHREALTIME/[.,]/}"
	echo "$((10#$t))"
}

# median prints the median of its arguments (the mean of the two middle
# values for an even count).
median() {
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# time_bpftool times `bpftool -j {map,prog,link} show` back to back, RUNS
# times, and counts, with strace when installed, the system calls of one
# more run (not timed).
time_bpftool() {
	local i start end kind n
	echo "timing bpftool, $RUNS runs" >&2
	bpftool_us=()
	for ((i = 0; i < RUNS; i++)); do
		start="$(now_us)"
		"$BPFTOOL" -j map show >/dev/null
		"$BPFTOOL" -j prog show >/dev/null
		"$BPFTOOL" -j link show >/dev/null
		end="$(now_us)"
		bpftool_us+=("$((end - start))")
	done
	bpftool_ms="$(median "${bpftool_us[@]}" | awk '{ printf "%.3f", $1 / 1000 }')"

	bpftool_syscalls="-"
	if command -v strace >/dev/null; then
		bpftool_syscalls=0
		for kind in map prog link; do
			strace -f -c -o "$work/strace" "$BPFTOOL" -j "$kind" show >/dev/null
			n="$(awk '$NF == "total" { print $4 }' "$work/strace")"
			bpftool_syscalls=$((bpftool_syscalls + n))
		done
	fi
}
