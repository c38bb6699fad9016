// Command faultcost prints what a page fault costs on this machine: the
// first touch of an anonymous page, a touch of a page already mapped, and
// the same pages faulted in by one MAP_POPULATE. On a VM whose memory the
// host backs lazily, first touches can cost tens of microseconds, and a
// process's start-up is then mostly its page faults.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	mib := flag.Int("mib", 64, "size of each mapping, in MiB")
	rounds := flag.Int("rounds", 3, "mappings to fault in, one after the other")
	flag.Parse()
	n := *mib << 20
	page := os.Getpagesize()
	pages := float64(n / page)
	for range *rounds {
		b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			fmt.Fprintln(os.Stderr, "faultcost:", err)
			os.Exit(1)
		}
		t := time.Now()
		for i := 0; i < n; i += page {
			b[i] = 1
		}
		first := time.Since(t)
		t = time.Now()
		for i := 0; i < n; i += page {
			b[i] = 2
		}
		again := time.Since(t)
		unix.Munmap(b)
		t = time.Now()
		b, err = unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_POPULATE)
		if err != nil {
			fmt.Fprintln(os.Stderr, "faultcost:", err)
			os.Exit(1)
		}
		populate := time.Since(t)
		unix.Munmap(b)
		fmt.Printf("per page: first touch %.2f us, touch again %.3f us, MAP_POPULATE %.2f us\n",
			float64(first.Nanoseconds())/pages/1e3, float64(again.Nanoseconds())/pages/1e3,
			float64(populate.Nanoseconds())/pages/1e3)
	}
}
