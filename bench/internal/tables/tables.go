// Package tables parses the -tables flag of the benchmark tools: the
// capacities of the agent's tables, "maps,programs,links".
package tables

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
)

// Set sets cfg's table capacities from s, "maps,programs,links".
func Set(cfg *config.Config, s string) error {
	caps := strings.Split(s, ",")
	if len(caps) != 3 {
		return fmt.Errorf(`-tables: want "maps,programs,links", got %q`, s)
	}
	dst := []*int{&cfg.MaxTrackedMaps, &cfg.MaxTrackedPrograms, &cfg.MaxTrackedLinks}
	for i, c := range caps {
		n, err := strconv.Atoi(c)
		if err != nil {
			return fmt.Errorf("-tables: %w", err)
		}
		*dst[i] = n
	}
	return nil
}
