package ui

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/taskertype"
)

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// --- overview ---

func (u *UI) overviewPage(w http.ResponseWriter, r *request) error {
	o, err := u.overview(r.Context())
	if err != nil {
		return err
	}
	return u.render(w, r, "overview", "Overview", o)
}

// overviewFragment is the overview's numbers alone, for its refresh.
func (u *UI) overviewFragment(w http.ResponseWriter, r *request) error {
	o, err := u.overview(r.Context())
	if err != nil {
		return err
	}
	html, err := u.fragment(r, "overview", "stats", o)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, err = w.Write([]byte(html))
	return err
}

// --- task list ---

// taskListView is the task list page's data.
type taskListView struct {
	Filter     url.Values
	States     []taskertype.TaskState
	Namespaces []string
	Rows       []*taskRow
	Older      string // query of the next (older) page, "" when none
	Newer      string
	Message    string
}

// dateLayouts are the accepted forms of the time range fields (UTC).
var dateLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339, "2006-01-02"}

func parseWhen(v string) (*time.Time, error) {
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, v); err == nil {
			t = t.UTC()
			return &t, nil
		}
	}
	return nil, badRequest(fmt.Sprintf("unreadable time %q: want YYYY-MM-DDTHH:MM (UTC)", v))
}

func (u *UI) tasksPage(w http.ResponseWriter, r *request) error {
	q := r.URL.Query()
	if s := strings.TrimSpace(q.Get("q")); s != "" {
		id, err := u.db.findTask(r.Context(), s)
		if err != nil {
			return err
		}
		if id > 0 {
			http.Redirect(w, r.Request, fmt.Sprintf("/ui/tasks/%d", id), http.StatusSeeOther)
			return nil
		}
	}
	f := &taskFilter{Namespace: q.Get("namespace"), Name: q.Get("name"), Version: q.Get("version"),
		State: q.Get("state"), Tag: q.Get("tag"), Limit: 50}
	if f.State != "" && !slices.Contains(taskertype.TaskStates(), taskertype.TaskState(f.State)) {
		return badRequest(fmt.Sprintf("unknown task state %q", f.State))
	}
	var err error
	if v := q.Get("from"); v != "" {
		if f.From, err = parseWhen(v); err != nil {
			return err
		}
	}
	if v := q.Get("to"); v != "" {
		if f.To, err = parseWhen(v); err != nil {
			return err
		}
	}
	if v := q.Get("after"); v != "" {
		if f.After, err = strconv.ParseInt(v, 10, 64); err != nil {
			return badRequest("after must be a task id")
		}
	}
	if v := q.Get("before"); v != "" {
		if f.Before, err = strconv.ParseInt(v, 10, 64); err != nil {
			return badRequest("before must be a task id")
		}
	}
	rows, older, newer, err := u.db.listTasks(r.Context(), f)
	if err != nil {
		return err
	}
	v := &taskListView{Filter: q, States: taskertype.TaskStates(), Rows: rows}
	if s := strings.TrimSpace(q.Get("q")); s != "" {
		v.Message = fmt.Sprintf("No task has the id or idempotency key %q.", s)
	}
	seen := map[string]bool{}
	for _, t := range u.c.Templates() {
		if !seen[t.Namespace] {
			seen[t.Namespace] = true
			v.Namespaces = append(v.Namespaces, t.Namespace)
		}
	}
	slices.Sort(v.Namespaces)
	page := func(key string, id int64) string {
		p := url.Values{}
		for k, vs := range q {
			if k != "after" && k != "before" && k != "q" {
				p[k] = vs
			}
		}
		p.Set(key, strconv.FormatInt(id, 10))
		return "?" + p.Encode()
	}
	if len(rows) > 0 {
		if older {
			v.Older = page("after", rows[len(rows)-1].ID)
		}
		if newer {
			v.Newer = page("before", rows[0].ID)
		}
	}
	return u.render(w, r, "tasks", "Tasks", v)
}

// --- task page ---

// taskView is the task page's data.
type taskView struct {
	Task *taskHead
	// Graph is the JSON of the DAG when the task is small enough to draw.
	Graph      string
	GraphDraw  bool
	GraphLimit int
	// Table: one page of steps (big tasks, or the list under the graph).
	Table      []*stepRow
	TableState string
	Page       int
	Pages      int
	Selected   *stepDetail
	Readiness  *taskertype.StepReadiness
	Attempts   []*attempt
	Audit      []*taskertype.Transition
	Poll       int64 // milliseconds
	Message    string
	StepStates []taskertype.StepState
	// Terminal tasks are polled no more.
	Terminal bool
	// Can* say which actions the task allows now.
	CanCancel, CanResolve, CanRetry bool
}

// attempt is one attempt of a step, from its transitions.
type attempt struct {
	N        int
	Start    time.Time
	End      *time.Time
	Outcome  string
	Actor    string
	Reason   string
	Error    map[string]any
	Duration time.Duration
}

// graphDoc is the DAG handed to the page's script: step names, states
// (one letter each, stateCodes) and parent indices.
type graphDoc struct {
	Task   int64    `json:"task"`
	Names  []string `json:"names"`
	States string   `json:"states"`
	// Parents[i] lists the indices of step i's parents.
	Parents [][]int `json:"parents"`
}

// stateCodes maps a step state to the one letter of the live updates.
var stateCodes = map[string]byte{
	"pending": 'p', "in_progress": 'r', "waiting_for_retry": 'w', "complete": 'c', "error": 'e',
	"cancelled": 'x', "resolved_manually": 'm', "skipped": 's',
}

func encodeStates(states []string) string {
	b := make([]byte, len(states))
	for i, s := range states {
		b[i] = cmp.Or(stateCodes[s], '?')
	}
	return string(b)
}

func taskID(r *request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest("the task id must be a positive integer")
	}
	return id, nil
}

// loadTask builds the task page's data.
func (u *UI) loadTask(r *request, withGraph bool) (*taskView, error) {
	id, err := taskID(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	h, err := u.db.taskHead(ctx, id)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, notFound(fmt.Sprintf("task %d not found", id))
	}
	q := r.URL.Query()
	v := &taskView{Task: h, Poll: u.opts.PollInterval.Milliseconds(), StepStates: taskertype.StepStates(),
		Terminal: h.State.Terminal()}
	_, _, errCancel := statemachine.Task(h.State, statemachine.TaskEventCancel)
	_, _, errResolve := statemachine.Task(h.State, statemachine.TaskEventResolve)
	v.CanCancel, v.CanResolve = errCancel == nil, errResolve == nil
	for _, c := range h.StepCounts {
		if _, _, err := statemachine.Step(taskertype.StepState(c.State), statemachine.StepEventRetry); err == nil {
			v.CanRetry = true
		}
	}
	v.GraphDraw, v.GraphLimit = h.Steps <= u.opts.GraphLimit, u.opts.GraphLimit
	if withGraph && v.GraphDraw {
		steps, err := u.db.steps(ctx, id, "", 0, 0)
		if err != nil {
			return nil, err
		}
		edges, err := u.db.edges(ctx, id)
		if err != nil {
			return nil, err
		}
		g := graphDoc{Task: id, Names: make([]string, len(steps)), Parents: make([][]int, len(steps))}
		index := make(map[int64]int, len(steps))
		states := make([]string, len(steps))
		for i, s := range steps {
			g.Names[i], states[i], index[s.ID] = s.Name, s.State, i
			g.Parents[i] = []int{}
		}
		for _, e := range edges {
			p, ok1 := index[e[0]]
			c, ok2 := index[e[1]]
			if ok1 && ok2 {
				g.Parents[c] = append(g.Parents[c], p)
			}
		}
		g.States = encodeStates(states)
		b, err := json.Marshal(g)
		if err != nil {
			return nil, err
		}
		v.Graph = string(b)
	}
	// The step table: a page of steps, optionally of one state.
	v.TableState = q.Get("state")
	if v.TableState != "" && !slices.Contains(taskertype.StepStates(), taskertype.StepState(v.TableState)) {
		return nil, badRequest(fmt.Sprintf("unknown step state %q", v.TableState))
	}
	n := h.Steps
	if v.TableState != "" {
		n = 0
		for _, c := range h.StepCounts {
			if c.State == v.TableState {
				n = c.Count
			}
		}
	}
	v.Pages = max(1, (n+StepPageSize-1)/StepPageSize)
	v.Page = 1
	if p, err := strconv.Atoi(q.Get("page")); err == nil && p >= 1 {
		v.Page = min(p, v.Pages)
	}
	if v.Table, err = u.db.steps(ctx, id, v.TableState, (v.Page-1)*StepPageSize, StepPageSize); err != nil {
		return nil, err
	}
	if name := q.Get("step"); name != "" {
		if v.Selected, err = u.db.step(ctx, id, name); err != nil {
			return nil, err
		}
		if v.Selected == nil {
			v.Message = fmt.Sprintf("Task %d has no step %q.", id, name)
		} else {
			v.Attempts = attempts(v.Selected.Transitions)
			ex, err := u.c.Explain(ctx, id)
			if err != nil && !errors.Is(err, tasker.ErrNotFound) {
				return nil, err
			}
			for _, sr := range ex {
				if sr.Name == name {
					v.Readiness = sr
				}
			}
		}
	}
	if v.Audit, err = u.db.taskTransitions(ctx, id); err != nil {
		return nil, err
	}
	switch q.Get("done") {
	case "retry":
		v.Message = "Retried: the task is queued again."
	case "resolve_step":
		v.Message = "The step is resolved manually."
	case "resolve_task":
		v.Message = "The task is resolved manually."
	case "cancel":
		v.Message = "The task is cancelled."
	}
	return v, nil
}

// attempts groups a step's transitions into attempts: each claim starts
// one, the next transition out of in_progress ends it.
func attempts(trs []*taskertype.Transition) []*attempt {
	var out []*attempt
	var cur *attempt
	for _, tr := range trs {
		var meta struct {
			Attempt int            `json:"attempt"`
			Error   map[string]any `json:"error"`
		}
		_ = json.Unmarshal(tr.Metadata, &meta)
		if tr.Event == "claim" {
			cur = &attempt{N: cmp.Or(meta.Attempt, len(out)+1), Start: tr.CreatedAt, Actor: tr.Actor, Outcome: "running"}
			out = append(out, cur)
			continue
		}
		if cur != nil && tr.FromState == "in_progress" {
			end := tr.CreatedAt
			cur.End, cur.Duration = &end, end.Sub(cur.Start)
			cur.Outcome, cur.Reason, cur.Error = tr.ToState, tr.Reason, meta.Error
			if tr.Event == "release" {
				cur.Outcome = "released"
			}
			cur = nil
		}
	}
	slices.Reverse(out)
	return out
}

func (u *UI) taskPage(w http.ResponseWriter, r *request) error {
	v, err := u.loadTask(r, true)
	if err != nil {
		return err
	}
	return u.render(w, r, "task", fmt.Sprintf("Task %d", v.Task.ID), v)
}

// liveDoc is the task page's poll answer.
type liveDoc struct {
	Status   string         `json:"status"`
	Version  string         `json:"version"`
	Terminal bool           `json:"terminal"`
	Counts   map[string]int `json:"counts"`
	States   string         `json:"states,omitempty"`
	Steps    int            `json:"steps"`
	Time     time.Time      `json:"time"`
}

// taskLive answers the task page's poll: the task's state, a version that
// changes with any state change, the step counts and, for a drawn graph,
// every step's state.
func (u *UI) taskLive(w http.ResponseWriter, r *request) error {
	id, err := taskID(r)
	if err != nil {
		return err
	}
	h, err := u.db.taskHead(r.Context(), id)
	if err != nil {
		return err
	}
	if h == nil {
		return notFound(fmt.Sprintf("task %d not found", id))
	}
	d := liveDoc{Status: string(h.State), Version: h.LiveVersion(), Terminal: h.State.Terminal(), Counts: map[string]int{},
		Steps: h.Steps, Time: time.Now().UTC()}
	for _, c := range h.StepCounts {
		d.Counts[c.State] = c.Count
	}
	if h.Steps <= u.opts.GraphLimit && r.URL.Query().Get("graph") == "1" {
		states, err := u.db.stepStates(r.Context(), id)
		if err != nil {
			return err
		}
		d.States = encodeStates(states)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(d)
}

// taskFragments re-renders the parts of the task page that change, for
// the live updates.
func (u *UI) taskFragments(w http.ResponseWriter, r *request) error {
	v, err := u.loadTask(r, false)
	if err != nil {
		return err
	}
	out := map[string]string{}
	for _, name := range []string{"head", "panel", "table", "audit"} {
		if out[name], err = u.fragment(r, "task", name, v); err != nil {
			return err
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// --- actions ---

// actions the dashboard offers, with their confirmation wording.
var actions = map[string]struct {
	Title, Verb string
	Step        bool
}{
	"retry":        {"Retry the step", "Retry", true},
	"retry_all":    {"Retry every failed step", "Retry", false},
	"resolve_step": {"Resolve the step manually", "Resolve", true},
	"resolve_task": {"Resolve the task manually", "Resolve", false},
	"cancel":       {"Cancel the task", "Cancel task", false},
}

// confirmView is the confirmation page's data.
type confirmView struct {
	TaskID int64
	Task   *taskHead
	Action string
	Title  string
	Verb   string
	Step   string
	Who    string
}

func (u *UI) confirmPage(w http.ResponseWriter, r *request) error {
	if u.opts.ReadOnly {
		return &httpError{status: http.StatusForbidden, msg: "the dashboard is read-only (--ui-read-only)"}
	}
	id, err := taskID(r)
	if err != nil {
		return err
	}
	h, err := u.db.taskHead(r.Context(), id)
	if err != nil {
		return err
	}
	if h == nil {
		return notFound(fmt.Sprintf("task %d not found", id))
	}
	name := r.URL.Query().Get("action")
	a, ok := actions[name]
	if !ok {
		return badRequest(fmt.Sprintf("unknown action %q", name))
	}
	v := &confirmView{TaskID: id, Task: h, Action: name, Title: a.Title, Verb: a.Verb}
	if a.Step {
		v.Step = r.URL.Query().Get("step")
		if v.Step == "" {
			return badRequest("this action needs a step")
		}
	}
	if r.sess != nil {
		v.Who = r.sess.Who
	}
	return u.render(w, r, "confirm", a.Title, v)
}

// actorName cleans an operator's name for the audit trail.
func actorName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	if len([]rune(s)) > 64 {
		s = string([]rune(s)[:64])
	}
	return s
}

// taskAction applies a confirmed action through the Client, with the
// actor "ui:<name>" (or "ui" without a name) and the given reason.
func (u *UI) taskAction(w http.ResponseWriter, r *request) error {
	if u.opts.ReadOnly {
		return &httpError{status: http.StatusForbidden, msg: "the dashboard is read-only (--ui-read-only)"}
	}
	id, err := taskID(r)
	if err != nil {
		return err
	}
	name := r.PostFormValue("action")
	a, ok := actions[name]
	if !ok {
		return badRequest(fmt.Sprintf("unknown action %q", name))
	}
	step := r.PostFormValue("step")
	if a.Step && step == "" {
		return badRequest("this action needs a step")
	}
	who := "ui"
	if n := actorName(cmp.Or(r.PostFormValue("who"), whoOf(r.sess))); n != "" {
		who = "ui:" + n
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	actor := tasker.Actor{Who: who, Reason: cmp.Or(reason, a.Title+" (dashboard)")}
	ctx := r.Context()
	switch name {
	case "retry":
		_, err = u.c.RetrySteps(ctx, id, []string{step}, actor)
	case "retry_all":
		_, err = u.c.RetrySteps(ctx, id, nil, actor)
		name = "retry"
	case "resolve_step":
		_, err = u.c.ResolveStep(ctx, id, step, actor)
	case "resolve_task":
		_, err = u.c.ResolveTask(ctx, id, actor)
	case "cancel":
		_, err = u.c.CancelTask(ctx, id, actor)
	}
	var ite *taskertype.InvalidTransitionError
	switch {
	case errors.As(err, &ite):
		return &httpError{status: http.StatusConflict, msg: "not done: " + err.Error() + " (the state changed; reload the task)"}
	case errors.Is(err, tasker.ErrNotFound):
		return notFound(err.Error())
	case errors.Is(err, tasker.ErrInvalidRequest):
		return badRequest(err.Error())
	case err != nil:
		return err
	}
	u.log.Info("dashboard action", "action", name, "task_id", id, "step", step, "actor", who)
	back := url.Values{"done": {name}}
	if step != "" {
		back.Set("step", step)
	}
	http.Redirect(w, r.Request, fmt.Sprintf("/ui/tasks/%d?%s", id, back.Encode()), http.StatusSeeOther)
	return nil
}

func whoOf(s *session) string {
	if s == nil {
		return ""
	}
	return s.Who
}

// --- templates ---

func (u *UI) templatesPage(w http.ResponseWriter, r *request) error {
	ts := u.c.Templates()
	slices.SortFunc(ts, func(a, b *tasker.Template) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
	})
	return u.render(w, r, "templates", "Templates", ts)
}

// templateView is a template page's data.
type templateView struct {
	T      *tasker.Template
	Graph  string
	Schema string
}

func (u *UI) templatePage(w http.ResponseWriter, r *request) error {
	t, err := u.c.Template(r.PathValue("namespace"), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		if errors.Is(err, tasker.ErrNotFound) {
			return notFound(err.Error())
		}
		return err
	}
	g := graphDoc{Names: make([]string, len(t.Steps)), Parents: make([][]int, len(t.Steps))}
	index := map[string]int{}
	for i, s := range t.Steps {
		g.Names[i], index[s.Name] = s.Name, i
	}
	for i, s := range t.Steps {
		g.Parents[i] = []int{}
		for _, p := range s.DependsOn {
			if j, ok := index[p]; ok {
				g.Parents[i] = append(g.Parents[i], j)
			}
		}
	}
	g.States = strings.Repeat("t", len(t.Steps))
	gb, _ := json.Marshal(g)
	v := &templateView{T: t, Graph: string(gb)}
	if len(t.Schema) > 0 {
		v.Schema = prettyJSON(t.Schema)
	}
	return u.render(w, r, "template", t.Namespace+"/"+t.Name+"@"+t.Version, v)
}

// --- login ---

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	if u.token == nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	s := u.readSession(r)
	if s == nil {
		s = &session{ID: newSessionID(), Exp: time.Now().Add(SessionTTL).Unix()}
		u.setSession(w, s)
	}
	u.renderLogin(w, r, s, http.StatusOK, "")
}

func (u *UI) renderLogin(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	v := u.view(r, s, "Log in", map[string]any{"Next": safeNext(r.FormValue("next")), "Error": msg})
	v.Auth = false
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := u.pages["login"].ExecuteTemplate(w, "layout", v); err != nil {
		u.log.Error("render login", "err", err)
	}
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	if u.token == nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	s := u.readSession(r)
	if !u.checkCSRF(r, s) {
		http.Error(w, "invalid or missing CSRF token: reload the login page and try again", http.StatusForbidden)
		return
	}
	if !u.tokenOK(strings.TrimSpace(r.PostFormValue("token"))) {
		u.log.Warn("dashboard login refused", "remote", r.RemoteAddr)
		u.renderLogin(w, r, s, http.StatusUnauthorized, "That is not the API token.")
		return
	}
	ns := &session{ID: newSessionID(), Auth: true, Who: actorName(r.PostFormValue("who")),
		Exp: time.Now().Add(SessionTTL).Unix()}
	u.setSession(w, ns)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	s := u.readSession(r)
	if !u.checkCSRF(r, s) {
		http.Error(w, "invalid or missing CSRF token", http.StatusForbidden)
		return
	}
	u.clearSession(w)
	dest := "/ui/login"
	if u.token == nil {
		dest = "/ui/"
	}
	http.Redirect(w, r, dest, http.StatusSeeOther)
}
