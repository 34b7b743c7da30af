//go:build !linux

package cpustat

import "time"

func processCPU() (time.Duration, error) { return 0, ErrUnsupported }

func findServer(int) (*Server, error) { return nil, ErrUnsupported }

func serverCPU(int) (time.Duration, error) { return 0, ErrUnsupported }
