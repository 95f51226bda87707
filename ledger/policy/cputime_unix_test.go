//go:build unix

package policy

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the process has used, so a benchmark on a busy
// machine can report its own cost apart from the wall time it waited.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
