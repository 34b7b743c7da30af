package sqlcore

import (
	"bufio"
	"bytes"
	_ "embed" // fragments.sql
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"text/template"
)

// fragments are the text/template definitions shared by both databases'
// queries (the readiness test, the task and step columns, the summary).
//
//go:embed fragments.sql
var fragments string

// Queries are a database's fixed statements by name, read once from its
// queries/*.sql files (LoadQueries).
type Queries map[string]string

// CoreQueries are the names Core runs; every database defines them all.
var CoreQueries = []string{
	"TaskGet", "TaskListFrom", "TaskState", "TasksByID", "TaskTransitions", "TaskSummary", "TasksByIdempotencyKey",
	"IdempotencyKeysRelease",
	"NamedTaskFind", "NamespaceUpsert", "NamedTaskUpsert", "NamedSteps",
	"StepList", "StepsByID", "StepParents", "StepReadiness", "StepsMove", "StepLeaseExpired", "StepTransitions",
	"DependencyResults", "QueueDelete", "QueueUpsert", "QueueClaim", "QueueRelease", "QueueAck", "QueueExtend",
	"QueueList", "QueueNextRunAt", "QueueStats",
	"MigrationTableCreate", "MigrationsApplied", "MigrationsRecorded", "MigrationRecord", "MigrationForget",
	"MigrationRenumber",
	// Dynamic fan-out (fanout.go).
	"StepFanOutRelease", "StepFanOutParents",
	"TaskPruneLock", "TaskPruneDue", "TaskPruneFinished", "TaskPruneCountDue", "TaskPruneCountFinished",
	"ConcurrencyOf", "ConcurrencyLock", "ConcurrencyRunning", "ConcurrencyTaskSteps",
	"ConcurrencyLockMany",
}

// LoadQueries reads the named statements of the .sql files in dir of
// fsys and checks that they hold every name of CoreQueries and own (the
// names the database package runs itself). A file is a list of blocks,
// each a line "-- name: Name" and the statement that follows it (up to the
// next such line). Fragments statements share (the readiness test, a
// table's column list) are text/template definitions ({{define "ready"}}
// ...{{end}}) used as {{template "ready" "$2"}}: those of fragments.sql
// here, for both databases, and any of the database's own files. Every
// file is executed once, here; nothing is rewritten per call.
func LoadQueries(fsys fs.FS, dir string, own ...string) (Queries, error) {
	files, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("queries: no .sql files in %s (%v)", dir, err)
	}
	tmpl, err := template.New("fragments.sql").Option("missingkey=error").Parse(fragments)
	if err != nil {
		return nil, fmt.Errorf("queries: shared fragments: %w", err)
	}
	if tmpl, err = tmpl.ParseFS(fsys, files...); err != nil {
		return nil, fmt.Errorf("queries in %s: %w", dir, err)
	}
	out := Queries{}
	for _, f := range files {
		var buf bytes.Buffer
		if err := tmpl.ExecuteTemplate(&buf, path.Base(f), nil); err != nil {
			return nil, fmt.Errorf("queries %s: %w", f, err)
		}
		if err := out.parse(f, buf.String()); err != nil {
			return nil, err
		}
	}
	if err := out.Require(RequiredQueries(own)...); err != nil {
		return nil, err
	}
	return out, nil
}

// RequiredQueries are CoreQueries, RateLimitQueries, HandlerLimitQueries and
// own.
func RequiredQueries(own []string) []string {
	return append(append(append(slices.Clone(CoreQueries), RateLimitQueries...), HandlerLimitQueries...), own...)
}

// parse adds the "-- name:" blocks of one expanded file.
func (q Queries) parse(file, text string) error {
	var name string
	var body strings.Builder
	flush := func() error {
		stmt := strings.TrimSpace(body.String())
		body.Reset()
		if name == "" {
			if stmt != "" {
				return fmt.Errorf("queries %s: statement before the first -- name: line", file)
			}
			return nil
		}
		stmt = strings.TrimSpace(strings.TrimSuffix(stmt, ";"))
		if stmt == "" {
			return fmt.Errorf("queries %s: %s is empty", file, name)
		}
		if _, dup := q[name]; dup {
			return fmt.Errorf("queries %s: %s is defined twice", file, name)
		}
		q[name] = stmt
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "-- name:"); ok {
			if err := flush(); err != nil {
				return err
			}
			name = strings.TrimSpace(n)
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue // a comment
		}
		body.WriteString(line)
		body.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("queries %s: %w", file, err)
	}
	return flush()
}

// Require fails naming every one of names that q lacks.
func (q Queries) Require(names ...string) error {
	var missing []string
	for _, n := range names {
		if _, ok := q[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("queries: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Names returns the query names in order.
func (q Queries) Names() []string {
	out := make([]string, 0, len(q))
	for n := range q {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
