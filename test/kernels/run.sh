#!/usr/bin/env bash
# The kernel matrix: runs the real-kernel tests and an end-to-end check of
# the agent on Debian's Linux 6.1 LTS and 6.12 LTS kernels, in QEMU guests
# (software emulation: no KVM needed), and on the host's own kernel, and
# prints one line per kernel:
#
#   kernel 6.1.0-56-cloud-amd64: 60 passed, 0 failed, 3 skipped (Test...: <missing feature>: <what the kernel said> ...) [...]
#
# Any failure on any kernel exits 1.
#
#   test/kernels/run.sh [6.1] [6.12] [host]     (default: all three)
#   KERNEL_MATRIX_SUITES='kernel kernel.test -test.run=^TestX$ -test.count=50' test/kernels/run.sh 6.1
#
# Needs root (the tests load BPF), Go, qemu-system-x86, busybox-static,
# bpftool and util-linux (setpriv) from Debian, and a package index that
# offers linux-image-6.1.0-*-cloud-amd64 and linux-image-6.12.*+deb12-cloud-amd64
# (Debian 12 with bookworm-updates/security; .ci/run runs apt-get update).
# For each series the newest kernel the index offers is fetched with
# apt-get download (not installed) and cached under test/kernels/.cache
# (git-ignored; KERNEL_MATRIX_CACHE overrides), so a rerun fetches nothing.
#
# In each guest: the tests of internal/kernel and internal/owner (who holds
# each object), the real-kernel tests of
# internal/collector (TestKernel*) and test/kernels/e2e (the agent's
# --once in auto, syscall and least-privilege iterator mode against
# bpftool), all built static (CGO_ENABLED=0: no -race, which needs cgo),
# with busybox, bpftool and setpriv (and their shared libraries) in the
# initramfs. See init.sh for the guest's side and report/ for the summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH"

here=test/kernels
cache=${KERNEL_MATRIX_CACHE:-$here/.cache}
work=$cache/run
# Per guest: 2 vCPUs, so that per-CPU data is exercised; a hard timeout.
guest_timeout=${KERNEL_MATRIX_TIMEOUT:-600}

# Debian package name patterns of each series (newest by version sort).
declare -A series_pkg=(
	[6.1]='^linux-image-6\.1\.0-[0-9]+-cloud-amd64$'
	[6.12]='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$'
)
# The suites each kernel runs: name, binary, test flags (later flags win,
# so KERNEL_MATRIX_SUITES='kernel kernel.test -test.run=X -test.count=50'
# repeats one test on a guest kernel).
suites=${KERNEL_MATRIX_SUITES:-'kernel kernel.test
owner owner.test
collector collector.test -test.run=^TestKernel
e2e e2e.test'}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(6.1 6.12 host)

log() { echo "kernel-matrix: $*"; }
die() {
	echo "kernel-matrix: $*" >&2
	exit 1
}

for tool in qemu-system-x86_64 bpftool setpriv go; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install qemu-system-x86 busybox-static bpftool util-linux)"
done
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || die "/bin/busybox must be Debian's busybox-static"
[ "$(id -u)" = 0 ] || die "must run as root"

started=$(date +%s)
rm -rf "$work"
mkdir -p "$work" "$cache/kernels"

# fetch SERIES: prints the path of the newest kernel of the series,
# downloading it on first use.
fetch() {
	local pkg dir tmp version
	pkg=$(apt-cache search --names-only "${series_pkg[$1]}" | awk '{print $1}' | sort -V | tail -n 1)
	[ -n "$pkg" ] || die "no package matches ${series_pkg[$1]} in the package index (apt-get update?)"
	dir=$cache/kernels/$pkg
	if [ ! -s "$dir/vmlinuz" ]; then
		tmp=$(mktemp -d "$cache/kernels/.fetch.XXXXXX")
		(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg") >&2
		version=$(dpkg-deb -f "$tmp"/*.deb Version)
		dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
		mkdir -p "$dir"
		mv "$tmp"/boot/vmlinuz-* "$dir/vmlinuz"
		echo "$version" >"$dir/version"
		rm -rf "$tmp"
	fi
	echo "$dir"
}

# The binaries, shared by the guests and the host run.
log "building the test binaries and the agent (static)"
bin=$work/tests
mkdir -p "$bin"
export CGO_ENABLED=0
go test -c -o "$bin/kernel.test" ./internal/kernel
go test -c -o "$bin/owner.test" ./internal/owner
go test -c -o "$bin/collector.test" ./internal/collector
go test -c -o "$bin/e2e.test" ./$here/e2e
go build -o "$work/ebpf-metrics" ./cmd/ebpf-metrics
go build -o "$work/report" ./$here/report
unset CGO_ENABLED
echo "$suites" >"$bin/suites"

# The initramfs: busybox, the binaries, bpftool and setpriv with the
# shared libraries they load.
initramfs() {
	local root=$work/root lib
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp}
	cp /bin/busybox "$root/bin/"
	for applet in sh mount ip stty cat cut date uname poweroff sync sleep ls; do
		ln -s busybox "$root/bin/$applet"
	done
	cp "$here/init.sh" "$root/init"
	chmod 755 "$root/init"
	cp -r "$bin" "$root/tests"
	cp "$work/ebpf-metrics" "$root/bin/"
	cp "$(command -v bpftool)" "$root/usr/sbin/bpftool"
	cp "$(command -v setpriv)" "$root/usr/bin/setpriv"
	for lib in $(ldd "$root/usr/sbin/bpftool" "$root/usr/bin/setpriv" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null) >"$work/initramfs.cpio"
	rm -rf "$root"
}

# boot SERIES KERNEL_DIR: runs the suites in a guest; results in $work/SERIES/.
boot() {
	local out=$work/$1 t0 rc=0
	mkdir -p "$out"
	t0=$(date +%s)
	timeout "$guest_timeout" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 2048 -smp 2 \
		-nographic -no-reboot -nic none -monitor none \
		-kernel "$2/vmlinuz" -initrd "$work/initramfs.cpio" \
		-append "console=ttyS0 panic=-1 quiet" \
		-serial "file:$out/console.log" -serial "file:$out/results.log" \
		>"$out/qemu.log" 2>&1 || rc=$?
	echo "$(($(date +%s) - t0))" >"$out/secs"
	[ "$rc" = 0 ] || echo "qemu exited with $rc (124: timed out after ${guest_timeout}s)" >>"$out/qemu.log"
}

declare -A kdir
guests=()
for s in "${want[@]}"; do
	case $s in
	host) ;;
	6.1 | 6.12)
		kdir[$s]=$(fetch "$s")
		guests+=("$s")
		log "Linux $s: $(basename "${kdir[$s]}") ($(cat "${kdir[$s]}/version"))"
		;;
	*) die "unknown series $s (6.1, 6.12, host)" ;;
	esac
done

# The host first, alone: two guests emulating CPUs take both of the host's,
# and its tests' bounds (allocations by the Go runtime) are for an idle CPU.
if [[ " ${want[*]} " == *" host "* ]]; then
	log "host: $(uname -r), natively"
	mkdir -p "$work/host"
	t0=$(date +%s)
	CI=${CI:-true} EBPF_METRICS_AGENT=$PWD/$work/ebpf-metrics sh "$here/init.sh" "$work/host/results.log" "$PWD/$bin"
	echo "$(($(date +%s) - t0))" >"$work/host/secs"
fi
# Then the guests, all at once.
pids=()
if [ ${#guests[@]} -gt 0 ]; then
	initramfs
	log "initramfs $(($(stat -c %s "$work/initramfs.cpio") >> 20)) MiB; booting ${guests[*]} (TCG, 2 vCPUs each)"
	for s in "${guests[@]}"; do
		boot "$s" "${kdir[$s]}" &
		pids+=($!)
	done
fi
for p in "${pids[@]}"; do
	wait "$p"
done

failed=0
summary=()
for s in "${guests[@]}" host; do
	[ -d "$work/$s" ] || continue
	secs=$(cat "$work/$s/secs")
	if [ -s "$work/$s/qemu.log" ]; then
		sed "s/^/kernel-matrix: $s: qemu: /" "$work/$s/qemu.log"
	fi
	label=()
	[ "$s" != host ] || label=(-label "$(uname -r) (host)")
	if ! line=$("$work/report" -log "$work/$s/results.log" "${label[@]}"); then
		failed=1
		if [ "$s" != host ] && ! grep -q '^@@@ done' "$work/$s/results.log"; then
			log "$s: the guest did not finish; last lines of its console ($work/$s/console.log):"
			tail -n 30 "$work/$s/console.log" | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/^/    /'
		fi
	fi
	# The failures, then the summary line with the run's wall time.
	echo "$line" | sed '$d'
	summary+=("$(echo "$line" | tail -n 1) ${secs}s")
done
echo
log "summary ($(($(date +%s) - started))s in all):"
printf '%s\n' "${summary[@]}"
exit $failed
