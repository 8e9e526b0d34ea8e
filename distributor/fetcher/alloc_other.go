//go:build !linux

package fetcher

import "os"

// preallocate sets the size; without fallocate a full disk shows up later.
func preallocate(f *os.File, size int64) error { return f.Truncate(size) }
