#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each:
#
#   test/fuzz.sh                    # every target, 20s each
#   FUZZTIME=2m test/fuzz.sh        # longer (any go test -fuzztime value: 30s, 5000x)
#   FUZZMINIMIZETIME=1m test/fuzz.sh  # minimize inputs longer (default 5s)
#   FUZZ_PACKAGES=./internal/kernel test/fuzz.sh
#
# Targets are the `func FuzzXxx(f *testing.F)` of each package's tests, so a
# new one is run without editing this script. A failing input is written by go test to
# <package>/testdata/fuzz/<Target>/ (commit it with the fix: it becomes a
# seed that `go test` runs every time); the script then exits 1.
# `go test ./...` already runs every seed corpus; this adds the search.
#
# Go 1.26's fuzzing coordinator can fail a run with a bare "context deadline
# exceeded" as -fuzztime runs out, when a loaded machine has a worker still
# mid-call (golang/go#75804, fixed in Go 1.27). Such a run wrote no failing
# input; it is reported as a flake and not counted as a failure. Any other
# failure, and every run that wrote an input, fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-20s}"
# Each new input is minimized for at most this long (go test's default is
# 60s, which can spend a whole short run on one input).
minimizetime="${FUZZMINIMIZETIME:-5s}"
packages="${FUZZ_PACKAGES:-./...}"
failed=0
flaked=0
ran=0
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# inputs lists the failing inputs saved for a target.
inputs() { ls "$1/testdata/fuzz/$2" 2>/dev/null | sort || true; }

# shellcheck disable=SC2086 # FUZZ_PACKAGES is a list
for dir in $(go list -f '{{if .TestGoFiles}}{{.Dir}}{{end}}' $packages); do
	pkg="$(go list "$dir")"
	targets="$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$dir"/*_test.go | sort -u)"
	for target in $targets; do
		echo "--- fuzz $pkg $target ($fuzztime)"
		ran=$((ran + 1))
		before="$(inputs "$dir" "$target")"
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" "$pkg" 2>&1 | tee "$log"; then
			if [ "$before" = "$(inputs "$dir" "$target")" ] && grep -qx '    context deadline exceeded' "$log" &&
				[ "$(grep -c -- '^--- FAIL' "$log")" -eq 1 ]; then
				echo "FLAKE: $pkg $target: Go's fuzzing coordinator stopped on its own deadline (golang/go#75804); no input failed"
				flaked=$((flaked + 1))
			else
				echo "FAIL: $pkg $target: the failing input is under $dir/testdata/fuzz/$target/"
				failed=$((failed + 1))
			fi
		fi
	done
done

if [ "$ran" -eq 0 ]; then
	echo "no fuzz target found in $packages"
	exit 1
fi
echo "fuzz: $((ran - failed - flaked)) passed, $failed failed, $flaked stopped by golang/go#75804"
[ "$failed" -eq 0 ]
