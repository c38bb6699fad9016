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
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-20s}"
# Each new input is minimized for at most this long (go test's default is
# 60s, which can spend a whole short run on one input).
minimizetime="${FUZZMINIMIZETIME:-5s}"
packages="${FUZZ_PACKAGES:-./...}"
failed=0
ran=0

# shellcheck disable=SC2086 # FUZZ_PACKAGES is a list
for dir in $(go list -f '{{if .TestGoFiles}}{{.Dir}}{{end}}' $packages); do
	pkg="$(go list "$dir")"
	targets="$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$dir"/*_test.go | sort -u)"
	for target in $targets; do
		echo "--- fuzz $pkg $target ($fuzztime)"
		ran=$((ran + 1))
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" "$pkg"; then
			echo "FAIL: $pkg $target: the failing input is under $(go list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$target/"
			failed=$((failed + 1))
		fi
	done
done

if [ "$ran" -eq 0 ]; then
	echo "no fuzz target found in $packages"
	exit 1
fi
echo "fuzz: $((ran - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
