//go:build unix

package builtin

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcessGroup starts the program in a process group of its own and makes
// cancellation (timeout or context) kill the whole group, so that the
// program's children die with it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killProcessGroup(cmd.Process.Pid) }
}

// killProcessGroup sends SIGKILL to every process of the group led by pid.
func killProcessGroup(pid int) error {
	if pid <= 0 {
		return os.ErrProcessDone
	}
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if err == syscall.ESRCH {
		return os.ErrProcessDone
	}
	return err
}
