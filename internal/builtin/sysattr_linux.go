package builtin

import "syscall"

// childSysProcAttr asks for SIGKILL on the program when the thread that
// started it (locked by the caller for the program's life) goes away.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
