// Package kernel is the boundary to the kernel: it reads eBPF objects, by
// system calls (SyscallSource: bpf(2) through BPF, fdinfo) or with BPF
// iterators (Iterators, loaded through cilium/ebpf), into fixed-size Records.
// Every structure passed to bpf(2) is a generated UAPI layout and every
// buffer is owned by the caller, so that reading an object allocates nothing.
package kernel

//go:generate go run ./gentypes -btf /sys/kernel/btf/vmlinux -out types_gen.go
