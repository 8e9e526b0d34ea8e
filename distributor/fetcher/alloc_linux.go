package fetcher

import (
	"os"
	"syscall"
)

// preallocate reserves size bytes for f, so a full disk is an error now rather than
// a fault later: the library writes through a memory map, and a write to a page the
// file system cannot back kills the process with SIGBUS.
func preallocate(f *os.File, size int64) error {
	return syscall.Fallocate(int(f.Fd()), 0, 0, size)
}
