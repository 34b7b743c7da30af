//go:build unix && !linux

package builtin

import "syscall"

// childSysProcAttr has no parent-death signal to ask for on this OS: the
// supervisor's lifeline alone kills the program with its runner.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
