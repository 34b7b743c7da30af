//go:build unix

package builtin

// How a tasker:command step dies with its runner.
//
// A step's program runs under a small supervisor: the runner's own
// executable started again in a special mode (see supervisorArg and init
// below), not a separate binary to install. The supervisor
//
//   - is started by the runner in a new process group (Setpgid), and starts
//     the program in that same group, so that the program and everything it
//     starts (sh -> sleep) share one group: one kill(-pgid, SIGKILL) ends
//     them all;
//   - inherits the read end of a "lifeline" pipe whose only write end stays
//     in the runner. When the runner dies, however it dies (SIGKILL, OOM,
//     crash), the kernel closes that write end, the supervisor's read returns
//     EOF, and the supervisor kills its whole process group, itself
//     included. An open file lives as long as the process, unlike a
//     parent-death signal, which Go delivers when the OS *thread* that forked
//     exits, and which reaches only the direct child, never a grandchild;
//   - reports how the program ended on a second "status" pipe (exit code,
//     signal, or why it could not start), then kills what the program left
//     behind in its group, so a finished step leaves no process running.
//
// The runner kills the group itself on timeout or cancellation, and again
// if the supervisor dies without reporting. As a second line of defence the
// supervisor asks for a parent-death SIGKILL on the program where the OS
// offers one (Linux), with its OS thread locked for the program's life.
//
// A program that leaves the group on purpose (setsid, setpgid, a daemon) is
// out of reach: that is the documented limit. Where the supervisor cannot be
// started (a c-shared or c-archive build, whose executable is the host
// program), the program runs directly as the leader of its own group with a
// parent-death SIGKILL where available: the program itself dies with the
// runner, its children may not.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// supervisorArg, as the first argument, starts the executable as a command
// supervisor instead of its usual main.
const supervisorArg = "__tasker_command_supervisor_v1__"

// supervisorName is the supervisor's argv[0], as ps shows it.
const supervisorName = "tasker-command-supervisor"

// Supervisor file descriptors (ExtraFiles start at 3).
const (
	lifelineFD = 3
	statusFD   = 4
)

func init() {
	if len(os.Args) >= 4 && os.Args[1] == supervisorArg {
		os.Exit(supervise(os.Args[2], os.Args[3:]))
	}
}

// supervise runs the program path with argv and never returns normally: it
// ends by killing its own process group. The return value is used only when
// the supervisor was started wrongly.
func supervise(path string, argv []string) int {
	if syscall.Getpgrp() != os.Getpid() {
		// kill(0, ...) would hit the group of whoever started us.
		fmt.Fprintln(os.Stderr, supervisorName+": must lead its own process group")
		return 125
	}
	lifeline := os.NewFile(lifelineFD, "lifeline")
	status := os.NewFile(statusFD, "status")
	if lifeline == nil || status == nil {
		fmt.Fprintln(os.Stderr, supervisorName+": started without its pipes")
		return 125
	}
	// Neither pipe may reach the program: the lifeline's EOF must mean
	// "the runner is gone", and the status pipe's EOF "the supervisor is".
	syscall.CloseOnExec(lifelineFD)
	syscall.CloseOnExec(statusFD)

	go func() {
		var b [64]byte
		for {
			if _, err := lifeline.Read(b[:]); err != nil {
				break // EOF: the runner is gone (or has finished with us)
			}
		}
		killOwnGroup()
	}()

	runtime.LockOSThread() // the parent-death signal follows this thread
	cmd := &exec.Cmd{
		Path:        path,
		Args:        argv,
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		SysProcAttr: childSysProcAttr(),
	}
	if err := cmd.Start(); err != nil {
		var errno syscall.Errno
		errors.As(err, &errno)
		fmt.Fprintf(status, "start %d %s", int(errno), err)
		_ = status.Close()
		killOwnGroup()
		return 127
	}
	_ = cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		fmt.Fprintf(status, "signal %d", int(ws.Signal()))
	} else {
		fmt.Fprintf(status, "exit %d", ws.ExitStatus())
	}
	_ = status.Close()
	killOwnGroup() // and whatever the program left running in it
	return 0
}

// killOwnGroup sends SIGKILL to the caller's process group, the caller
// included.
func killOwnGroup() {
	_ = syscall.Kill(0, syscall.SIGKILL)
	os.Exit(137) // not reached
}

var supervisorOnce struct {
	sync.Once
	path string
}

// supervisorPath returns the executable to start as a supervisor, or "" when
// this program cannot be re-executed as one.
func supervisorPath() string {
	supervisorOnce.Do(func() {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				switch {
				case s.Key != "-buildmode":
				case s.Value == "c-shared", s.Value == "c-archive", s.Value == "plugin", s.Value == "shared":
					return // the executable is some other program, loading this code
				}
			}
		}
		if runtime.GOOS == "linux" {
			// The running image, even if its file was replaced or deleted.
			if _, err := os.Stat("/proc/self/exe"); err == nil {
				supervisorOnce.path = "/proc/self/exe"
				return
			}
		}
		if p, err := os.Executable(); err == nil {
			supervisorOnce.path = p
		}
	})
	return supervisorOnce.path
}

// runProcess runs the program of spec under a supervisor (see the top of
// this file) and reports how it ended. Cancelling ctx kills the program's
// whole process group.
func runProcess(ctx context.Context, spec *commandSpec, stdin io.Reader, stdout, stderr io.Writer) procResult {
	path := spec.path
	if !strings.Contains(path, "/") {
		// Resolved with the runner's PATH, as exec.Command does.
		p, err := exec.LookPath(path)
		if err != nil {
			return procResult{startErr: err}
		}
		path = p
	}
	argv := append([]string{spec.path}, spec.args...)
	sup := supervisorPath()
	if sup == "" {
		return runDirect(ctx, spec, path, argv, stdin, stdout, stderr)
	}

	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return procResult{startErr: fmt.Errorf("lifeline pipe: %w", err)}
	}
	defer lifeW.Close() // on return, the supervisor (if alive) kills the group
	statusR, statusW, err := os.Pipe()
	if err != nil {
		_ = lifeR.Close()
		return procResult{startErr: fmt.Errorf("status pipe: %w", err)}
	}
	defer statusR.Close()

	cmd := exec.CommandContext(ctx, sup)
	cmd.Args = append([]string{supervisorName, supervisorArg, path}, argv...)
	cmd.Env, cmd.Dir = spec.env, spec.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.ExtraFiles = []*os.File{lifeR, statusW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killProcessGroup(cmd.Process.Pid) }
	cmd.WaitDelay = commandWaitDelay
	err = cmd.Start()
	_ = lifeR.Close()
	_ = statusW.Close()
	if err != nil {
		return procResult{startErr: err}
	}
	report := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(statusR, 4<<10))
		report <- b
	}()
	_ = cmd.Wait()
	rep := <-report

	res, ok := parseSupervisorReport(rep)
	if !ok {
		// The supervisor died without a word (killed by the runner on
		// cancellation, or by someone else): take its group down.
		_ = killProcessGroup(cmd.Process.Pid)
		res = procResult{finished: true, signal: "its supervisor died: " + cmd.ProcessState.String()}
	}
	return res
}

// parseSupervisorReport reads the supervisor's status line.
func parseSupervisorReport(b []byte) (procResult, bool) {
	kind, rest, _ := strings.Cut(string(b), " ")
	switch kind {
	case "exit", "signal":
		n, err := strconv.Atoi(strings.TrimSpace(rest))
		if err != nil {
			return procResult{}, false
		}
		if kind == "exit" {
			return procResult{finished: true, exitCode: n}, true
		}
		return procResult{finished: true, signal: "signal: " + syscall.Signal(n).String()}, true
	case "start":
		num, msg, _ := strings.Cut(rest, " ")
		n, err := strconv.Atoi(num)
		if err != nil {
			return procResult{}, false
		}
		if n != 0 {
			return procResult{startErr: fmt.Errorf("%s: %w", trimErrno(msg, syscall.Errno(n)), syscall.Errno(n))}, true
		}
		return procResult{startErr: errors.New(msg)}, true
	}
	return procResult{}, false
}

// trimErrno drops a trailing ": <errno text>" from msg, which %w adds back.
func trimErrno(msg string, errno syscall.Errno) string {
	return strings.TrimSuffix(msg, ": "+errno.Error())
}

// runDirect runs the program without a supervisor, as the leader of its own
// process group with a parent-death SIGKILL where the OS has one.
func runDirect(ctx context.Context, spec *commandSpec, path string, argv []string, stdin io.Reader, stdout, stderr io.Writer) procResult {
	// The parent-death signal fires when the forking thread exits: keep this
	// goroutine on its thread until the program is gone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.CommandContext(ctx, path)
	cmd.Args = argv
	cmd.Env, cmd.Dir = spec.env, spec.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	attr := childSysProcAttr()
	attr.Setpgid = true
	cmd.SysProcAttr = attr
	cmd.Cancel = func() error { return killProcessGroup(cmd.Process.Pid) }
	cmd.WaitDelay = commandWaitDelay
	err := cmd.Run()
	state := cmd.ProcessState
	if state == nil {
		return procResult{startErr: err}
	}
	// Whatever the program left running in its group goes with it.
	_ = killProcessGroup(cmd.Process.Pid)
	ws, _ := state.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return procResult{finished: true, signal: "signal: " + ws.Signal().String()}
	}
	return procResult{finished: true, exitCode: ws.ExitStatus()}
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
