// Package kernel is the boundary to the kernel: every bpf(2) call the agent
// makes goes through BPF, every structure it passes is a generated UAPI
// layout, and every buffer is owned by the caller, so that reading an object
// allocates nothing.
package kernel

//go:generate go run ./gentypes -btf /sys/kernel/btf/vmlinux -out types_gen.go
