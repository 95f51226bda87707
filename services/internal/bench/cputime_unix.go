//go:build unix

package bench

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the process has used (user and system), so a
// phase can report what it cost apart from the wall time it waited for the
// disk or for a core on a shared machine. The embedded NATS server runs in
// this process, so its work counts too, in the raw runs as in Custos's.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
