// Package cpustat measures CPU time spent on a piece of work: this
// process's own (getrusage) and, when the PostgreSQL server runs on the same
// machine, the whole server's (its postmaster and every backend, including
// backends that exited). Benchmarks divide both by the work done to show
// where the time of a task, a job or a transaction goes.
package cpustat

import (
	"errors"
	"time"
)

// ErrUnsupported is returned where the platform cannot tell (not Linux for
// the server, no getrusage for the process).
var ErrUnsupported = errors.New("cpustat: not supported on this platform")

// Server is a PostgreSQL cluster running on this machine, found through the
// process id of one of its backends.
type Server struct {
	postmaster int
}

// Postmaster returns the server's postmaster process id.
func (s *Server) Postmaster() int { return s.postmaster }

// Process returns the user plus system CPU time this process has used.
func Process() (time.Duration, error) { return processCPU() }

// FindServer finds the cluster that serves the backend with process id
// backendPID (SELECT pg_backend_pid()). It fails when that process is not
// a PostgreSQL backend on this machine (a remote server, or a pid that
// means something else here) or when the platform cannot tell.
func FindServer(backendPID int) (*Server, error) { return findServer(backendPID) }

// CPU returns the user plus system CPU time of the whole cluster so far:
// the postmaster, its live children and the children it has reaped.
func (s *Server) CPU() (time.Duration, error) { return serverCPU(s.postmaster) }
