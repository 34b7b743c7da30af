package faultinject

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/tasker-systems/tasker"
)

type attemptKey struct {
	task int64
	step string
}

type logAttempt struct {
	start Record
	end   *Record
}

// errorMeta is the part of a failure transition's metadata the checks read.
type errorMeta struct {
	Attempt int `json:"attempt"`
	Error   struct {
		Kind    string `json:"kind"`
		Attempt int    `json:"attempt"`
	} `json:"error"`
}

// Check verifies the invariants from the database (through the public API)
// and from the handler log, and fills rep's figures and violations:
//
//   - every task is terminal (complete or error), and failed only for a
//     planned permanent error or attempts used up by killed runners; the
//     durable queue is empty;
//   - no attempt started before every parent's completion was recorded;
//   - attempts of one step never overlapped: each attempt ended (its end
//     record, or the moment its process was reaped after SIGKILL) before
//     the next one started; a killed attempt was failed by the rescuer only
//     after its process was gone, and the next attempt started after that;
//   - attempt numbers never exceed max_attempts (database and log);
//   - every complete step has exactly one completion and its stored result
//     is the one its successful attempt returned;
//   - with EventEnqueue, every committed enqueue was delivered as an event
//     at least once, unless the process that committed it was killed before
//     it could publish (then the durable record got the task handled).
func Check(ctx context.Context, c *tasker.Client, logPath string, plans map[int64]TaskPlan, kills []Kill,
	eventMode bool, rep *Report) error {
	recs, torn, err := ReadLog(logPath)
	if err != nil {
		return err
	}
	rep.TornLogLines = torn
	violate := func(format string, args ...any) {
		if len(rep.Violations) < 200 {
			rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
		}
	}
	killedAt := map[string]time.Time{}  // SIGKILLed owners
	stoppedAt := map[string]time.Time{} // owners stopped gracefully
	for _, k := range kills {
		if !k.Graceful {
			killedAt[k.Owner] = k.At
		} else {
			stoppedAt[k.Owner] = k.At
		}
	}
	attempts := map[attemptKey][]*logAttempt{}
	open := map[string]*logAttempt{} // task/step/attempt/owner -> attempt without end yet
	enqueues := map[int64][]Record{}
	dropped := map[string]string{} // owner -> events its bus dropped
	for _, r := range recs {
		k := fmt.Sprintf("%d/%s/%d/%s", r.Task, r.Step, r.Attempt, r.Owner)
		switch r.Ev {
		case RecStart:
			a := &logAttempt{start: r}
			if open[k] != nil {
				violate("task %d step %s: attempt %d started twice under %s", r.Task, r.Step, r.Attempt, r.Owner)
			}
			open[k] = a
			attempts[attemptKey{r.Task, r.Step}] = append(attempts[attemptKey{r.Task, r.Step}], a)
			rep.Attempts++
		case RecEnd:
			if a := open[k]; a != nil {
				r := r
				a.end = &r
				delete(open, k)
			} else {
				violate("task %d step %s: end of attempt %d under %s without a start", r.Task, r.Step, r.Attempt, r.Owner)
			}
		case RecEnqueue:
			enqueues[r.Task] = append(enqueues[r.Task], r)
		case RecDropped:
			dropped[r.Owner] = r.Out
		}
	}

	queue, err := c.Queue(ctx)
	if err != nil {
		return fmt.Errorf("check: list queue: %w", err)
	}
	for _, e := range queue {
		violate("task %d left in the durable queue (%s, %s)", e.TaskID, e.Operation, e.Reason)
	}
	if len(plans) != rep.Tasks {
		violate("%d tasks created, %d planned", len(plans), rep.Tasks)
	}
	ids := make([]int64, 0, len(plans))
	for id := range plans {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if err := checkTask(ctx, c, id, plans[id], attempts, enqueues[id], killedAt, stoppedAt, dropped, eventMode, rep, violate); err != nil {
			return err
		}
	}
	return nil
}

// outageExplains reports whether the PostgreSQL restart can explain the
// rescue at t of a live runner's attempt: a lease extended every fifth of
// StepLease survives an outage of four fifths of it (less the keeper's
// retry), so only a longer restart can let one expire, and only within a
// lease of its end.
func outageExplains(rep *Report, t time.Time) bool {
	if rep.PGRestarts == 0 || rep.PGDowntime < StepLease*4/5-200*time.Millisecond {
		return false
	}
	return !t.Before(rep.PGRestartAt) && t.Before(rep.PGRestartAt.Add(rep.PGDowntime+StepLease))
}

// claimCutOff reports whether a claim stamped at t ran as PostgreSQL
// restarted (from a second before the restart began to its end), so that
// its commit may have landed unseen by the runner.
func claimCutOff(rep *Report, t time.Time) bool {
	return rep.PGRestarts > 0 && !t.IsZero() && !t.Before(rep.PGRestartAt.Add(-time.Second)) &&
		!t.After(rep.PGRestartAt.Add(rep.PGDowntime))
}

// rescueJudgement is what the checker makes of a rescue (an attempt failed
// with lease_expired).
type rescueJudgement int

const (
	// rescueAfterKill: the attempt's owner was killed before the rescue
	// (or the attempt had ended): the rescue is what a kill calls for.
	rescueAfterKill rescueJudgement = iota
	// rescueExcused: no kill explains it, but a graceful stop (a handler
	// outlived the grace), a PostgreSQL restart longer than a lease
	// tolerates, or a claim whose commit the restart cut off does.
	rescueExcused
	// rescueWhileAlive: the owner was alive and extending its lease: the
	// rescue failed work still running (a violation).
	rescueWhileAlive
)

// judgeRescue judges a rescue at `at` of an attempt claimed at claimAt,
// whose owner was killed at *killed or stopped at *stopped (nil: not);
// ended reports whether the attempt had ended before the rescue.
func judgeRescue(rep *Report, at, claimAt time.Time, killed, stopped *time.Time, ended func() bool) rescueJudgement {
	switch {
	case killed != nil && (!at.Before(*killed) || ended()):
		return rescueAfterKill
	case stopped != nil && !at.Before(*stopped):
		return rescueExcused
	case outageExplains(rep, at):
		// Also when the owner was killed later: the restart outlasted
		// what a lease tolerates (the documented limit).
		return rescueExcused
	case killed == nil && claimCutOff(rep, claimAt):
		// The claim's commit may have landed as the restart cut its
		// connection: the runner saw an error and never ran or held the
		// step (an unknowable commit, as for events).
		return rescueExcused
	default:
		return rescueWhileAlive
	}
}

func checkTask(ctx context.Context, c *tasker.Client, id int64, plan TaskPlan, attempts map[attemptKey][]*logAttempt,
	enqueues []Record, killedAt, stoppedAt map[string]time.Time, dropped map[string]string, eventMode bool, rep *Report,
	violate func(string, ...any)) error {
	d, err := c.Task(ctx, id)
	if err != nil {
		return fmt.Errorf("check: task %d: %w", id, err)
	}
	taskTrs, stepTrs, err := c.Transitions(ctx, id)
	if err != nil {
		return fmt.Errorf("check: transitions of task %d: %w", id, err)
	}
	trsByStep := map[string][]*tasker.Transition{}
	for _, tr := range stepTrs {
		trsByStep[tr.StepName] = append(trsByStep[tr.StepName], tr)
	}
	completedAt := map[string]time.Time{}
	for _, st := range d.Steps {
		for _, tr := range trsByStep[st.Name] {
			if tr.ToState == "complete" {
				completedAt[st.Name] = tr.CreatedAt
			}
		}
	}
	exhaustedByKills, permanentFailed := false, false
	for _, st := range d.Steps {
		key := attemptKey{id, st.Name}
		trs := trsByStep[st.Name]
		if st.Attempts > st.MaxAttempts {
			violate("task %d step %s: %d attempts, max_attempts %d", id, st.Name, st.Attempts, st.MaxAttempts)
		}
		// Completions and the stored result.
		completions := 0
		for _, tr := range trs {
			if tr.ToState == "complete" {
				completions++
			}
		}
		switch {
		case st.State == "complete" && completions != 1:
			violate("task %d step %s: complete with %d completion transitions", id, st.Name, completions)
		case st.State != "complete" && completions != 0:
			violate("task %d step %s: %s after %d completions", id, st.Name, st.State, completions)
		}
		if st.State == "complete" {
			var res struct {
				Attempt int    `json:"attempt"`
				Owner   string `json:"owner"`
			}
			if err := json.Unmarshal(st.Results, &res); err != nil || res.Attempt != st.Attempts {
				violate("task %d step %s: stored result %s is not attempt %d's", id, st.Name, st.Results, st.Attempts)
			}
			found := false
			for _, a := range attempts[key] {
				if a.start.Attempt == res.Attempt && a.start.Owner == res.Owner && a.end != nil && a.end.Out == "ok" {
					found = true
				}
			}
			if !found {
				violate("task %d step %s: stored result of attempt %d under %s has no successful attempt in the log",
					id, st.Name, res.Attempt, res.Owner)
			}
		}
		// Rescues and releases from the audit trail.
		rescuedAt := map[int]time.Time{}
		claimOwner := map[int]string{}
		claimAt := map[int]time.Time{}
		for _, tr := range trs {
			var m errorMeta
			_ = json.Unmarshal(tr.Metadata, &m)
			switch {
			case tr.Event == "claim":
				claimOwner[m.Attempt], claimAt[m.Attempt] = tr.Actor, tr.CreatedAt
			case tr.Event == "release":
				rep.Released++
			case tr.FromState == "in_progress" && m.Error.Kind == "lease_expired":
				rep.Rescued++
				rescuedAt[m.Error.Attempt] = tr.CreatedAt
				owner := claimOwner[m.Error.Attempt]
				var killed, stopped *time.Time
				if k, ok := killedAt[owner]; ok {
					killed = &k
				} else if sa, ok := stoppedAt[owner]; ok {
					stopped = &sa
				}
				ended := func() bool { return endedBefore(attempts[key], m.Error.Attempt, owner, tr.CreatedAt) }
				switch judgeRescue(rep, tr.CreatedAt, claimAt[m.Error.Attempt], killed, stopped, ended) {
				case rescueExcused:
					rep.RescuedNoKill++
				case rescueWhileAlive:
					if killed != nil {
						violate("task %d step %s: attempt %d rescued at %s while its runner %s was alive (killed %s)",
							id, st.Name, m.Error.Attempt, tr.CreatedAt.Format(time.RFC3339Nano), owner,
							killed.Format(time.RFC3339Nano))
					} else {
						// The owner was alive and its lease keeper extending:
						// a rescue here fails work that is still running.
						violate("task %d step %s: attempt %d rescued at %s while its runner %s was alive and extending its lease",
							id, st.Name, m.Error.Attempt, tr.CreatedAt.Format(time.RFC3339Nano), owner)
					}
				}
			}
		}
		// Log: attempts in start order never overlap; a missing end needs a kill.
		las := attempts[key]
		sort.Slice(las, func(i, j int) bool { return las[i].start.T < las[j].start.T })
		for i, a := range las {
			if a.start.Attempt > st.MaxAttempts {
				violate("task %d step %s: log attempt %d over max_attempts %d", id, st.Name, a.start.Attempt, st.MaxAttempts)
			}
			if a.start.Attempt > st.Attempts {
				violate("task %d step %s: log attempt %d, database counts %d", id, st.Name, a.start.Attempt, st.Attempts)
			}
			for _, p := range plan.parents(st.Name, d.Steps) {
				at, ok := completedAt[p]
				if !ok || a.start.Time().Before(at) {
					violate("task %d step %s attempt %d started %s before parent %s completed (%v)", id, st.Name,
						a.start.Attempt, a.start.Time().Format(time.RFC3339Nano), p, at.Format(time.RFC3339Nano))
				}
			}
			var ended time.Time
			switch k, killed := killedAt[a.start.Owner]; {
			case a.end != nil:
				ended = a.end.Time()
			case killed && k.After(a.start.Time()):
				ended = k
				rep.KilledMidAttempt++
				if r, ok := rescuedAt[a.start.Attempt]; !ok && st.State != "complete" {
					violate("task %d step %s: killed attempt %d never failed by the rescuer", id, st.Name, a.start.Attempt)
				} else if ok && i+1 < len(las) && las[i+1].start.Time().Before(r) {
					violate("task %d step %s: attempt %d started before the rescue of attempt %d", id, st.Name,
						las[i+1].start.Attempt, a.start.Attempt)
				}
			default:
				violate("task %d step %s: attempt %d under %s never ended and its runner was not killed", id, st.Name,
					a.start.Attempt, a.start.Owner)
				continue
			}
			if i+1 < len(las) && las[i+1].start.Time().Before(ended) {
				violate("task %d step %s: attempt %d (%s) started %s before attempt %d (%s) ended %s", id, st.Name,
					las[i+1].start.Attempt, las[i+1].start.Owner, las[i+1].start.Time().Format(time.RFC3339Nano),
					a.start.Attempt, a.start.Owner, ended.Format(time.RFC3339Nano))
			}
		}
		var doc struct {
			Kind string `json:"kind"`
		}
		_ = json.Unmarshal(st.Error, &doc)
		switch {
		case st.State == "error" && doc.Kind == "permanent":
			permanentFailed = true
			if !hasEnd(attempts[key], st.Attempts, ModePermanent) {
				violate("task %d step %s: failed permanently at attempt %d but no handler returned a permanent error", id, st.Name, st.Attempts)
			}
		case st.State == "error" && st.Attempts >= st.MaxAttempts:
			exhaustedByKills = true
		case st.State == "error":
			violate("task %d step %s: error (%s) after %d of %d attempts", id, st.Name, doc.Kind, st.Attempts, st.MaxAttempts)
		}
		// A permanent verdict the handler returned must be recorded, unless
		// its runner died before it could record it.
		if plan.Steps[st.Name].Mode == ModePermanent && st.State == "complete" {
			for _, a := range attempts[key] {
				if a.end != nil && a.end.Out == ModePermanent {
					if k, killed := killedAt[a.start.Owner]; !killed || k.Before(a.end.Time()) {
						violate("task %d step %s: permanent error of attempt %d lost without a crash", id, st.Name, a.start.Attempt)
					}
					rep.PermanentLostWithProcess++
				}
			}
		}
	}
	switch {
	case d.State == "complete":
		rep.Complete++
	case d.State == "error":
		rep.Failed++
		switch {
		case permanentFailed:
		case exhaustedByKills:
			rep.ExhaustedByKills++
		default:
			violate("task %d failed without a permanent error or exhausted attempts", id)
		}
	default:
		violate("task %d not terminal: %s", id, d.State)
	}
	if eventMode {
		checkEnqueues(id, taskTrs, stepTrs, enqueues, killedAt, dropped, rep, violate)
	}
	return nil
}

// hasEnd reports whether the log shows attempt n ending with out.
func hasEnd(las []*logAttempt, n int, out string) bool {
	for _, a := range las {
		if a.start.Attempt == n && a.end != nil && a.end.Out == out {
			return true
		}
	}
	return false
}

// endedBefore reports whether the log shows attempt n under owner ended before t.
func endedBefore(las []*logAttempt, n int, owner string, t time.Time) bool {
	for _, a := range las {
		if a.start.Attempt == n && a.start.Owner == owner {
			return a.end != nil && !a.end.Time().After(t)
		}
	}
	return true // never started: nothing ran
}

// parents returns a step's parents as stored.
func (p TaskPlan) parents(step string, steps []*tasker.Step) []string {
	for _, st := range steps {
		if st.Name == step {
			return st.Parents
		}
	}
	return nil
}

// checkEnqueues matches every committed enqueue of a task with a delivered
// event from the process that committed it.
//
// A commit whose event may legitimately be missing (its process was killed
// after it, or PostgreSQL restarted around it and the committer saw an
// error: the commit was cut off, as far as it knew) must not take an event
// another commit needs: after the restart a coordinator retrying its
// recording finds its first attempt committed, and a later commit of the
// same process delivers the only event of the two. So the commits that
// must have an event are matched first, each in time order taking the
// earliest unused event delivered at or after it (which matches as many
// as can be matched), and the excused ones take what is left.
func checkEnqueues(id int64, taskTrs, stepTrs []*tasker.Transition, delivered []Record, killedAt map[string]time.Time,
	dropped map[string]string, rep *Report, violate func(string, ...any)) {
	type commit struct {
		owner string
		kind  string
		at    time.Time
		what  string
	}
	var commits []commit
	for i, tr := range taskTrs {
		switch {
		case i == 0:
			commits = append(commits, commit{"driver", "task.enqueue", tr.CreatedAt, "initialization"})
		case tr.Event == "wait" || tr.Event == "yield":
			commits = append(commits, commit{tr.Actor, "task.reenqueue", tr.CreatedAt, "task " + tr.Event + ": " + tr.Reason})
		}
	}
	for _, tr := range stepTrs {
		var m errorMeta
		_ = json.Unmarshal(tr.Metadata, &m)
		if tr.FromState == "in_progress" && m.Error.Kind == "lease_expired" {
			commits = append(commits, commit{tr.Actor, "task.reenqueue", tr.CreatedAt, "rescue of " + tr.StepName})
		}
	}
	slices.SortStableFunc(commits, func(a, b commit) int { return a.at.Compare(b.at) })
	order := make([]int, len(delivered)) // delivered, earliest first
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(delivered[a].T, delivered[b].T) })
	used := make([]bool, len(delivered))
	take := func(cm commit) bool {
		for _, i := range order {
			r := delivered[i]
			if !used[i] && r.Owner == cm.owner && r.Out == cm.kind && !r.Time().Before(cm.at) {
				used[i] = true
				return true
			}
		}
		return false
	}
	excused := func(cm commit) (lostWithProcess, lostToRestart bool) {
		if k, killed := killedAt[cm.owner]; killed && !k.Before(cm.at) {
			return true, false
		}
		return false, rep.PGRestarts > 0 && !cm.at.Before(rep.PGRestartAt.Add(-StepLease)) &&
			cm.at.Before(rep.PGRestartAt.Add(rep.PGDowntime))
	}
	rep.EnqueueCommitted += len(commits)
	var later []commit
	for _, cm := range commits {
		if lost, cut := excused(cm); lost || cut {
			later = append(later, cm)
			continue
		}
		if take(cm) {
			rep.EnqueueDelivered++
			continue
		}
		why := ""
		if n := dropped[cm.owner]; n != "" {
			why = fmt.Sprintf(" (%s's event bus dropped %s events: a subscriber's buffer was full)", cm.owner, n)
		}
		violate("task %d: %s (%s) committed by %s at %s was never delivered%s", id, cm.kind, cm.what, cm.owner,
			cm.at.Format(time.RFC3339Nano), why)
	}
	for _, cm := range later {
		switch lost, _ := excused(cm); {
		case take(cm):
			rep.EnqueueDelivered++
		case lost:
			rep.EnqueueLostWithProcess++
		default:
			rep.EnqueueLostToRestart++
		}
	}
}
