// Package stat holds the summary statistics the benchmark tools print.
package stat

import "time"

// Median of sorted ds: the middle one, or the mean of the two middle ones.
func Median(ds []time.Duration) time.Duration {
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return (ds[n/2-1] + ds[n/2]) / 2
}
