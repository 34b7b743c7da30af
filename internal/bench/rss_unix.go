//go:build unix

package bench

import (
	"runtime"
	"syscall"
)

// peakRSSMB returns the process's peak resident set size in MiB
// (getrusage ru_maxrss: KiB on Linux, bytes on macOS).
func peakRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return float64(ru.Maxrss) / (1 << 20)
	}
	return float64(ru.Maxrss) / 1024
}
