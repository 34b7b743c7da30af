//go:build !unix

package builtin

import (
	"context"
	"io"
	"os/exec"
)

// runProcess runs the program directly: without process groups there is no
// supervisor, and only the program itself is killed on cancellation.
func runProcess(ctx context.Context, spec *commandSpec, stdin io.Reader, stdout, stderr io.Writer) procResult {
	cmd := exec.CommandContext(ctx, spec.path, spec.args...)
	cmd.Env, cmd.Dir = spec.env, spec.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.WaitDelay = commandWaitDelay
	err := cmd.Run()
	state := cmd.ProcessState
	if state == nil {
		return procResult{startErr: err}
	}
	res := procResult{finished: true, exitCode: state.ExitCode()}
	if res.exitCode < 0 {
		res.signal = state.String()
	}
	return res
}
