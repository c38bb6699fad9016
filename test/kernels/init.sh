#!/bin/sh
# The kernel matrix's test runner, for busybox sh. Two uses:
#
#   /init of a guest (no arguments): mounts what the tests need, runs the
#   suites listed in /suites with the binaries of /tests, writes the results
#   to the second serial port (/dev/ttyS1, a file on the host) and powers the
#   guest off.
#
#   init.sh OUT DIR, on the host: runs the suites listed in DIR/suites with
#   the binaries of DIR, results to the file OUT.
#
# A line of the suites file is: name binary [test flags...]. Each binary runs
# with -test.v=test2json; its output is framed by "@@@" lines that
# test/kernels/report reads.

if [ $# -eq 0 ]; then
	export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/tmp TMPDIR=/tmp
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev
	mount -t tmpfs tmpfs /tmp
	mount -t bpf bpf /sys/fs/bpf
	mount -t cgroup2 cgroup2 /sys/fs/cgroup
	ip link set lo up
	# The tests create thousands of objects, each an fd.
	ulimit -Hn 65536
	ulimit -Sn 65536
	# Everything a test could skip for is here (root, bpftool, setpriv):
	# CI makes such a skip a failure. Skips for kernel features stay.
	export CI=true EBPF_METRICS_EMULATED=1 EBPF_METRICS_AGENT=/bin/ebpf-metrics
	out=/dev/ttyS1
	dir=/tests
	stty -F "$out" raw -echo
else
	out=$1
	dir=$2
	: >"$out"
fi

say() { echo "@@@ $*" >>"$out"; }

say kernel "$(uname -r)"
say suites $(cut -d' ' -f1 "$dir/suites")
while read -r name bin args; do
	say begin "$name"
	start=$(date +%s)
	# shellcheck disable=SC2086 # args are several flags
	(cd "${TMPDIR:-/tmp}" && "$dir/$bin" -test.v=test2json -test.count=1 -test.timeout=5m $args) </dev/null >>"$out" 2>&1
	rc=$?
	say end "$name" "rc=$rc" "secs=$(($(date +%s) - start))"
done <"$dir/suites"
say done

if [ $# -eq 0 ]; then
	sync
	poweroff -f
fi
