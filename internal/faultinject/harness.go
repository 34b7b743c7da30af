package faultinject

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/tasker-systems/tasker"
)

// Timings every harness process uses: short leases so that a killed
// runner's work is rescued within seconds.
const (
	StepLease      = 2 * time.Second
	QueueLease     = 3 * time.Second
	RescueInterval = 500 * time.Millisecond
	PollInterval   = 200 * time.Millisecond
	ShutdownGrace  = time.Second
)

// RunnerConfig is the client configuration of a harness process.
func RunnerConfig(dbURL, templates, owner string, eventEnqueue bool) tasker.Config {
	return tasker.Config{
		DatabaseURL: dbURL, TemplatesDir: templates, Owner: owner, EventEnqueue: eventEnqueue,
		StepLease: StepLease, QueueLease: QueueLease, RescueInterval: RescueInterval,
		PollInterval: PollInterval, ShutdownGrace: ShutdownGrace,
		Backoff: tasker.BackoffConfig{Base: 100 * time.Millisecond, Max: time.Second, Min: 50 * time.Millisecond,
			Multiplier: 2, Jitter: 0.2, MaxServerDelay: 5 * time.Second, PriorityStep: 0.25},
	}
}

// Config configures one harness run.
type Config struct {
	// Seed drives every random choice (shapes, plans, kill times, victims).
	Seed uint64
	// Tasks is how many tasks to create. Defaults to 1000.
	Tasks int
	// Runners is how many runner processes run at once. Defaults to 3.
	Runners int
	// KillEvery is the mean time between kills (uniform in [1/2, 3/2] of
	// it). Defaults to 3 s. Every fifth stop is a graceful SIGTERM.
	KillEvery time.Duration
	// NoPostgresRestart skips the one PostgreSQL restart.
	NoPostgresRestart bool
	// EventEnqueue runs every process with the event-based enqueue handler
	// and checks that every enqueue event was delivered.
	EventEnqueue bool
	// WideTasks is how many of the tasks are of the wide shape (WideShape:
	// 600 leaves), spread over the run. 0: none.
	WideTasks int
	// Timeout bounds the run. Defaults to 10 minutes.
	Timeout time.Duration
	// Workdir holds the cluster, the logs and the templates. Required.
	Workdir string
	// RunnerBin is the built internal/faultinject/runner program. Required.
	RunnerBin string
	// Out receives progress lines. Defaults to io.Discard.
	Out io.Writer
	// KeepDatabase leaves the cluster's data directory in Workdir when the
	// run ends (stopped), for reading a failed run's records.
	KeepDatabase bool
}

// Kill is one stop of a runner process.
type Kill struct {
	Owner    string
	Graceful bool
	// At is when the process was reaped: it ran nothing after this.
	At time.Time
}

// Report is what a run did and what the checks found.
type Report struct {
	Seed             uint64
	Tasks            int
	Steps            int
	Attempts         int // handler attempts started (handler log)
	Complete, Failed int
	Kills            int // SIGKILLs
	GracefulStops    int // SIGTERMs
	PGRestarts       int
	PGDowntime       time.Duration
	// PGRestartAt is when the restart began.
	PGRestartAt time.Time
	// EnqueueLostToRestart counts enqueue events not published because the
	// commit that wrote the durable record reported an error while
	// PostgreSQL restarted (the outcome of a commit cut off by a crash is
	// unknown to the client; the durable record got the task handled).
	EnqueueLostToRestart int
	Rescued              int // attempts failed by the rescuer (lease expired)
	RescuedNoKill        int // ... whose runner was not killed: gracefully stopped, or a restart longer than a lease tolerates
	Released             int // attempts given back by a graceful shutdown (not counted)
	KilledMidAttempt     int // attempts whose process was killed while the handler ran
	ExhaustedByKills     int // tasks failed because lost attempts used up max_attempts
	// PermanentLostWithProcess counts permanent errors a handler returned
	// whose runner was killed before recording them (the step ran again).
	PermanentLostWithProcess int
	EnqueueCommitted         int // event variant: enqueue events that had to be delivered
	EnqueueDelivered         int
	EnqueueLostWithProcess   int // committed, then the process died before publishing
	TornLogLines             int
	Duration                 time.Duration
	Violations               []string
}

// String formats the report as the harness prints it.
func (r *Report) String() string {
	s := fmt.Sprintf("seed %d: %d tasks (%d complete, %d failed), %d steps, %d attempts; %d SIGKILLs, %d graceful stops, "+
		"%d PostgreSQL restarts (down %s); %d attempts rescued after lease expiry (%d without a kill), %d killed mid-attempt, "+
		"%d released on shutdown; %d tasks exhausted by kills; %d permanent errors lost with a killed runner; %s; violations = %d",
		r.Seed, r.Tasks, r.Complete, r.Failed, r.Steps, r.Attempts, r.Kills, r.GracefulStops, r.PGRestarts,
		r.PGDowntime.Round(time.Millisecond), r.Rescued, r.RescuedNoKill, r.KilledMidAttempt, r.Released,
		r.ExhaustedByKills, r.PermanentLostWithProcess, r.Duration.Round(time.Second), len(r.Violations))
	if r.EnqueueCommitted > 0 {
		s += fmt.Sprintf("; enqueue events: %d committed, %d delivered, %d lost with a killed process, %d lost to a commit "+
			"cut off by the PostgreSQL restart (both recovered from the durable record)",
			r.EnqueueCommitted, r.EnqueueDelivered, r.EnqueueLostWithProcess, r.EnqueueLostToRestart)
	}
	return s
}

type proc struct {
	owner string
	cmd   *exec.Cmd
	done  chan struct{}
}

// Run performs one harness run: it starts a PostgreSQL cluster, creates the
// tasks, runs and kills runners until every task is terminal (or Timeout),
// then checks the invariants.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Workdir == "" || cfg.RunnerBin == "" {
		return nil, errors.New("faultinject: Config.Workdir and Config.RunnerBin are required")
	}
	cfg.Tasks = cmpOr(cfg.Tasks, 1000)
	cfg.Runners = cmpOr(cfg.Runners, 3)
	cfg.KillEvery = cmpOr(cfg.KillEvery, 3*time.Second)
	cfg.Timeout = cmpOr(cfg.Timeout, 10*time.Minute)
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	start := time.Now()
	rep := &Report{Seed: cfg.Seed, Tasks: cfg.Tasks}
	rnd := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))

	work, err := os.MkdirTemp(cfg.Workdir, fmt.Sprintf("seed%d-", cfg.Seed))
	if err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	cluster, err := StartCluster(ctx, cfg.Workdir)
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer func() {
		if cfg.KeepDatabase {
			_ = cluster.Halt(context.WithoutCancel(ctx))
			fmt.Fprintf(cfg.Out, "seed %d: database kept in %s (start it with pg_ctl -D %s start)\n", cfg.Seed,
				cluster.Dir, filepath.Join(cluster.Dir, "data"))
			return
		}
		_ = cluster.Stop(context.WithoutCancel(ctx))
	}()
	tmplDir := filepath.Join(work, "templates")
	if err := WriteTemplates(tmplDir); err != nil {
		return nil, err
	}
	logPath := filepath.Join(work, "handler.log")
	hlog, err := OpenLog(logPath)
	if err != nil {
		return nil, err
	}
	defer hlog.Close()

	dcfg := RunnerConfig(cluster.URL, tmplDir, "driver", cfg.EventEnqueue)
	dcfg.AutoMigrate = true
	client, err := tasker.Open(ctx, dcfg)
	if err != nil {
		return nil, fmt.Errorf("open driver client: %w", err)
	}
	defer client.Close()
	client.RegisterHandler(HandlerClass, &Handler{Log: hlog, Owner: "driver"}) // never runs: the driver does not Run
	stopEvents := func() {}
	if cfg.EventEnqueue {
		ch, cancel := client.Subscribe("task.enqueue", "task.reenqueue")
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ev := range ch {
				_ = hlog.Append(Record{Ev: RecEnqueue, Task: ev.TaskID, Owner: "driver", Out: string(ev.Kind)})
			}
		}()
		stopEvents = func() { cancel(); <-done }
	}

	// Runner processes.
	var mu sync.Mutex
	procs := make([]*proc, cfg.Runners)
	gens := make([]int, cfg.Runners)
	var kills []Kill
	startProc := func(i int) error {
		gens[i]++
		owner := fmt.Sprintf("r%d.%d", i+1, gens[i])
		errf, err := os.Create(filepath.Join(work, owner+".stderr"))
		if err != nil {
			return fmt.Errorf("runner stderr: %w", err)
		}
		args := []string{"-db", cluster.URL, "-log", logPath, "-templates", tmplDir, "-owner", owner}
		if cfg.EventEnqueue {
			args = append(args, "-event-enqueue")
		}
		cmd := exec.Command(cfg.RunnerBin, args...)
		cmd.Stdout, cmd.Stderr = errf, errf
		if err := cmd.Start(); err != nil {
			_ = errf.Close()
			return fmt.Errorf("start runner %s: %w", owner, err)
		}
		p := &proc{owner: owner, cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); _ = errf.Close(); close(p.done) }()
		procs[i] = p
		return nil
	}
	for i := range procs {
		if err := startProc(i); err != nil {
			return nil, err
		}
	}
	stopAll := func() {
		for _, p := range procs {
			if p != nil {
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, p := range procs {
			if p == nil {
				continue
			}
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
	}

	// Task creation, retried through database faults with an idempotency key.
	plans := map[int64]TaskPlan{}
	var created int
	shapes := Shapes()
	type planned struct {
		shape Shape
		plan  TaskPlan
	}
	todo := make([]planned, cfg.Tasks)
	regular := shapes[:len(shapes)-1] // the wide shape is last: cfg.WideTasks of it, spread over the run
	wideEvery := 0
	if cfg.WideTasks > 0 {
		wideEvery = max(len(todo)/(cfg.WideTasks+1), 1)
	}
	wide := 0
	for i := range todo {
		s := regular[rnd.IntN(len(regular))]
		if wideEvery > 0 && wide < cfg.WideTasks && i > 0 && i%wideEvery == 0 {
			s, wide = shapes[len(shapes)-1], wide+1
		}
		todo[i] = planned{s, NewPlan(rnd, s)}
		rep.Steps += len(s.Steps)
	}
	runCtx, stopRun := context.WithTimeout(ctx, cfg.Timeout)
	defer stopRun()
	createDone := make(chan error, 1)
	go func() {
		for i, t := range todo {
			req := &tasker.TaskRequest{Namespace: Namespace, Name: t.shape.Name, Context: t.plan.Context(),
				IdempotencyKey: fmt.Sprintf("fi-%d-%d", cfg.Seed, i), Initiator: "faultinject"}
			for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
				task, _, err := client.InitializeTask(runCtx, req)
				if err == nil {
					mu.Lock()
					plans[task.ID] = t.plan
					created++
					mu.Unlock()
					break
				}
				if runCtx.Err() != nil {
					createDone <- runCtx.Err()
					return
				}
				select {
				case <-runCtx.Done():
				case <-time.After(wait):
				}
			}
			if i%25 == 24 {
				time.Sleep(150 * time.Millisecond)
			}
		}
		createDone <- nil
	}()

	// Chaos: kill (or stop) a random runner every few seconds; restart
	// PostgreSQL once, when a third of the tasks exist.
	chaosStop := make(chan struct{})
	chaosDone := make(chan struct{})
	crnd := rand.New(rand.NewPCG(cfg.Seed+1, cfg.Seed+2))
	go func() {
		defer close(chaosDone)
		stops := 0
		restarted := cfg.NoPostgresRestart
		for {
			d := cfg.KillEvery/2 + time.Duration(crnd.Int64N(int64(cfg.KillEvery)))
			select {
			case <-chaosStop:
				return
			case <-time.After(d):
			}
			mu.Lock()
			n := created
			mu.Unlock()
			if !restarted && n >= cfg.Tasks/3 {
				restarted = true
				t0 := time.Now()
				rep.PGRestartAt = t0
				if err := cluster.Restart(runCtx); err != nil {
					fmt.Fprintf(cfg.Out, "seed %d: restart PostgreSQL: %v\n", cfg.Seed, err)
				} else {
					rep.PGRestarts++
					rep.PGDowntime = time.Since(t0)
					fmt.Fprintf(cfg.Out, "seed %d: PostgreSQL restarted (-m immediate) in %s\n", cfg.Seed, rep.PGDowntime.Round(time.Millisecond))
				}
				continue
			}
			i := crnd.IntN(len(procs))
			p := procs[i]
			stops++
			graceful := stops%5 == 0
			sig := syscall.SIGKILL
			if graceful {
				sig = syscall.SIGTERM
			}
			_ = p.cmd.Process.Signal(sig)
			<-p.done
			mu.Lock()
			kills = append(kills, Kill{Owner: p.owner, Graceful: graceful, At: time.Now()})
			mu.Unlock()
			if graceful {
				rep.GracefulStops++
			} else {
				rep.Kills++
			}
			time.Sleep(200*time.Millisecond + time.Duration(crnd.Int64N(int64(500*time.Millisecond))))
			if err := startProc(i); err != nil {
				fmt.Fprintf(cfg.Out, "seed %d: %v\n", cfg.Seed, err)
			}
		}
	}()

	// Wait until every task is terminal.
	var createErr error
	createFinished := false
	lastPrint := time.Now()
	for {
		if !createFinished {
			select {
			case createErr = <-createDone:
				createFinished = true
			default:
			}
		}
		if runCtx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
		tasks, err := client.ListTasks(runCtx, &tasker.TaskFilter{Limit: cfg.Tasks + 10})
		if err != nil {
			continue
		}
		terminal := 0
		for _, t := range tasks {
			if t.State.Terminal() {
				terminal++
			}
		}
		if time.Since(lastPrint) > 5*time.Second {
			lastPrint = time.Now()
			mu.Lock()
			fmt.Fprintf(cfg.Out, "seed %d: %s created %d, terminal %d, kills %d\n", cfg.Seed,
				time.Since(start).Round(time.Second), created, terminal, len(kills))
			mu.Unlock()
		}
		if createFinished && terminal == cfg.Tasks {
			break
		}
	}
	close(chaosStop)
	<-chaosDone
	stopAll()
	stopEvents()
	rep.Duration = time.Since(start)
	if createErr != nil {
		rep.Violations = append(rep.Violations, fmt.Sprintf("creating tasks: %v", createErr))
	}
	if err := Check(context.WithoutCancel(ctx), client, logPath, plans, kills, cfg.EventEnqueue, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
