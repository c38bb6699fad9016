// Package bpftool lists the kernel's eBPF objects with `bpftool -j`, an
// implementation independent of this repository, for tests to check against.
package bpftool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"time"
)

// Kind is bpftool's name of an object kind.
type Kind string

const (
	Map     Kind = "map"
	Program Kind = "prog"
	Link    Kind = "link"
)

// Object is the part of one `bpftool -j map|prog|link show` entry that tests
// use; fields a kind does not have are zero.
type Object struct {
	ID           uint32 `json:"id"`
	Type         string `json:"type"`
	Name         string `json:"name"`
	Flags        uint32 `json:"flags"`
	KeySize      uint32 `json:"bytes_key"`
	ValueSize    uint32 `json:"bytes_value"`
	MaxEntries   uint32 `json:"max_entries"`
	BytesMemlock uint64 `json:"bytes_memlock"`
	ProgID       uint32 `json:"prog_id"`     // links
	TargetName   string `json:"target_name"` // iterator links
	// Pids are the processes holding a descriptor of the object, where
	// bpftool can find them (its iterator needs the kernel's bpf_map_fops
	// and the others in kallsyms: CONFIG_KALLSYMS_ALL).
	Pids []Pid `json:"pids"`
}

// Pid is a process holding an object.
type Pid struct {
	PID  uint32 `json:"pid"`
	Comm string `json:"comm"`
}

// Path finds the bpftool binary: on $PATH, else in /usr/sbin.
func Path() (string, error) {
	if p, err := exec.LookPath("bpftool"); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("/usr/sbin/bpftool"); err == nil {
		return p, nil
	}
	return "", errors.New("bpftool not found on $PATH nor in /usr/sbin")
}

// Show returns every object of kind in the kernel now, by ID.
func Show(kind Kind) (map[uint32]Object, error) {
	path, err := Path()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(path, "-j", string(kind), "show")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool -j %s show: %w: %s", kind, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var list []Object
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("bpftool -j %s show: decoding: %w", kind, err)
	}
	objs := make(map[uint32]Object, len(list))
	for _, o := range list {
		objs[o.ID] = o
	}
	return objs, nil
}

// Present returns those of ids that are objects of kind in the kernel now.
func Present(kind Kind, ids []uint32) ([]uint32, error) {
	objs, err := Show(kind)
	if err != nil {
		return nil, err
	}
	var present []uint32
	for _, id := range ids {
		if _, ok := objs[id]; ok {
			present = append(present, id)
		}
	}
	return present, nil
}

// WaitGone polls until none of ids is an object of kind, for up to timeout:
// the kernel frees released objects asynchronously, after an RCU grace period.
// It returns the IDs still present when it gives up.
func WaitGone(kind Kind, ids []uint32, timeout time.Duration) ([]uint32, error) {
	deadline := time.Now().Add(timeout)
	for {
		present, err := Present(kind, ids)
		if err != nil || len(present) == 0 || time.Now().After(deadline) {
			return present, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Skeletons reports whether bpftool was built with its BPF skeletons,
// without which it reports no Pids (Debian's bpftool 7.1 has none).
func Skeletons() (bool, error) {
	path, err := Path()
	if err != nil {
		return false, err
	}
	out, err := exec.Command(path, "-j", "version").Output()
	if err != nil {
		return false, fmt.Errorf("bpftool -j version: %w", err)
	}
	var v struct {
		Features struct {
			Skeletons bool `json:"skeletons"`
		} `json:"features"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return false, fmt.Errorf("bpftool -j version: decoding: %w", err)
	}
	return v.Features.Skeletons, nil
}
