package faultinject_test

import (
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runnerProc is one runner process (internal/faultinject/runner) of a
// kill test.
type runnerProc struct {
	owner string
	cmd   *exec.Cmd
	done  chan struct{}
	down  time.Time // when it exited
}

// fleet starts and stops the runner processes of a kill test, all on one
// database, templates directory and handler log.
type fleet struct {
	t                      *testing.T
	bin, url, log, tmplDir string
	prefix                 string // owner names: prefix-1, prefix-2, ...
	workers                int
	all                    []*runnerProc // every process started, in order
}

// start starts one more runner process.
func (f *fleet) start() *runnerProc {
	p := &runnerProc{owner: fmt.Sprintf("%s-%d", f.prefix, len(f.all)+1), done: make(chan struct{})}
	p.cmd = exec.Command(f.bin, "-db", f.url, "-log", f.log, "-templates", f.tmplDir, "-owner", p.owner,
		"-workers", fmt.Sprint(f.workers))
	p.cmd.Stderr = testWriter{f.t}
	require.NoError(f.t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); p.down = time.Now(); close(p.done) }()
	f.all = append(f.all, p)
	return p
}

// stop sends sig to p and waits for it to exit.
func (f *fleet) stop(p *runnerProc, sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	<-p.done
}
