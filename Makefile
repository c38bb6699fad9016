# Everything generated is committed; `make generate` rebuilds it from its
# sources byte for byte (CI checks that nothing changes):
#   internal/kernel/types_gen.go   UAPI layouts, from the kernel's BTF
#   internal/kernel/iter_bpfel.*   BPF iterators, from bpf/*.c (bpf2go, clang)
#   internal/kernel/holders_bpfel.* the iterator over tasks' files, likewise
#   bench/floor/floor_bpfel.*      the ID-only iterator of the benchmarks
# It needs Debian's clang, llvm and libbpf-dev, and /sys/kernel/btf/vmlinux.

GO ?= go

.PHONY: all build generate test check-generated bench

all: build

# -buildvcs=auto: the version and revision of build_info come from the
# checkout (a machine's GOFLAGS may say -buildvcs=false).
build:
	$(GO) build -buildvcs=auto -o bin/ ./cmd/...

generate:
	$(GO) generate ./...

# The test command of README.md.
test:
	$(GO) test -race -p 1 -count=1 ./...

check-generated: generate
	@git status --porcelain
	@test -z "$$(git status --porcelain)" || { echo "generated files differ from their sources: run make generate"; exit 1; }

bench:
	bench/syscall-vs-bpftool.sh
	bench/iterator-vs-bpftool.sh
