package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

const createTemplate = `name: item
namespace_name: bulk
version: 1.0.0
schema: {type: object, required: [n], properties: {n: {type: integer}}}
step_templates:
  - name: only
    handler_class: tasker:noop
`

// runCreate runs `tasker task create` with the requests file and returns
// the exit code, stdout and stderr.
func runCreate(t *testing.T, dsn, dir, file string, extra ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	args := append([]string{"--database-url", dsn, "--templates", dir, "task", "create", "--from-file", file}, extra...)
	code := Main(context.Background(), args, Options{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader("")})
	return code, out.String(), errb.String()
}

// TestTaskCreateFromFile: blank lines are skipped, bad lines (malformed
// JSON, unknown field, unknown template, schema violation) are reported with
// their line numbers and skipped, the good ones are created in batches, a
// second run finds the keyed ones existing, and --fail-fast stops at the
// first bad line.
func TestTaskCreateFromFile(t *testing.T) {
	testdb.EachBackend(t, func(t *testing.T, dsn string) {
		dir := t.TempDir()
		var migrateErr bytes.Buffer
		require.Equal(t, ExitOK, Main(context.Background(), []string{"--database-url", dsn, "migrate", "up"},
			Options{Stdout: &bytes.Buffer{}, Stderr: &migrateErr}), migrateErr.String())
		require.NoError(t, os.WriteFile(filepath.Join(dir, "item.yaml"), []byte(createTemplate), 0o600))
		var lines []string
		for i := range 25 {
			lines = append(lines, fmt.Sprintf(`{"namespace":"bulk","name":"item","context":{"n":%d},"idempotency_key":"k%d"}`, i, i))
		}
		lines = append(lines[:5], append([]string{"", `{"namespace":"bulk","name":"item","context":{"n":`}, lines[5:]...)...) // lines 6, 7
		lines = append(lines[:12], append([]string{`{"namespace":"bulk","name":"ghost"}`, "   "}, lines[12:]...)...)          // line 13, 14
		lines = append(lines, `{"namespace":"bulk","name":"item","context":{"n":"x"}}`, `{"namespace":"bulk","name":"item","colour":1}`)
		file := filepath.Join(dir, "tasks.ndjson")
		require.NoError(t, os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600))

		code, out, errs := runCreate(t, dsn, dir, file, "--batch", "4")
		require.Equal(t, ExitFailed, code, "stdout %s stderr %s", out, errs)
		require.Contains(t, out, "created 25, existing 0, failed 4")
		for _, want := range []string{"tasks.ndjson:7: ", "tasks.ndjson:13: ", "tasks.ndjson:30: ", "tasks.ndjson:31: "} {
			require.Contains(t, errs, want)
		}
		require.Contains(t, errs, "ghost")
		require.Contains(t, errs, "colour")
		require.Equal(t, 4, strings.Count(errs, "\n"), errs)
		require.Less(t, strings.Index(errs, "tasks.ndjson:7: "), strings.Index(errs, "tasks.ndjson:13: "),
			"reports in line order: %s", errs)

		code, out, _ = runCreate(t, dsn, dir, file, "--json")
		require.Equal(t, ExitFailed, code)
		var sum createSummary
		require.NoError(t, json.Unmarshal([]byte(out), &sum), out)
		require.Equal(t, createSummary{Existing: 25, Failed: 4}, createSummary{Created: sum.Created, Existing: sum.Existing, Failed: sum.Failed})

		c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: dsn, TemplatesDir: dir})
		require.NoError(t, err)
		tasks, err := c.ListTasks(context.Background(), &tasker.TaskFilter{Limit: 100})
		require.NoError(t, err)
		require.Len(t, tasks, 25)
		require.NoError(t, c.Close())

		code, out, errs = runCreate(t, dsn, dir, file, "--fail-fast", "--batch", "100")
		require.Equal(t, ExitFailed, code)
		require.Contains(t, errs, "tasks.ndjson:7: ")
		require.NotContains(t, errs, "tasks.ndjson:13: ")
		require.Contains(t, out, "stopped at the first failure")
		// The five lines before the bad one were written (they exist).
		require.Contains(t, out, "created 0, existing 5, failed 1")

		// A line the core refuses followed by a malformed one in the same
		// batch: reported in line order (the malformed line used to come
		// first, reported as it was read).
		mixed := filepath.Join(dir, "mixed.ndjson")
		require.NoError(t, os.WriteFile(mixed, []byte(`{"namespace":"bulk","name":"ghost"}`+"\n"+`{"namespace":`+"\n"), 0o600))
		code, _, errs = runCreate(t, dsn, dir, mixed)
		require.Equal(t, ExitFailed, code)
		require.Regexp(t, `^\S*mixed\.ndjson:1: [^\n]*ghost[^\n]*\n\S*mixed\.ndjson:2: not a JSON task request`, errs)

		// A byte order mark and CRLF line ends, as Windows tools write them.
		bom := filepath.Join(dir, "bom.ndjson")
		require.NoError(t, os.WriteFile(bom, []byte("\xef\xbb\xbf"+
			`{"namespace":"bulk","name":"item","context":{"n":1},"idempotency_key":"bom1"}`+"\r\n\r\n"+
			`{"namespace":"bulk","name":"item","context":{"n":2},"idempotency_key":"bom2"}`+"\r\n"), 0o600))
		code, out, errs = runCreate(t, dsn, dir, bom)
		require.Equal(t, ExitOK, code, errs)
		require.Contains(t, out, "created 2, existing 0, failed 0")

		good := filepath.Join(dir, "good.ndjson")
		require.NoError(t, os.WriteFile(good, []byte(lines[0]+"\n\n"+`{"namespace":"bulk","name":"item","context":{"n":99}}`), 0o600))
		code, out, errs = runCreate(t, dsn, dir, good)
		require.Equal(t, ExitOK, code, errs)
		require.Contains(t, out, "created 1, existing 1, failed 0")
	})
}
