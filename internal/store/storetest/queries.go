package storetest

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tasker-systems/tasker/internal/store/sqlcore"
)

// CheckQueries fails t unless the named queries q of a database package
// (own: the names it runs itself) are exactly the names its code runs and
// each prepares on its database (prepare). The names run are those of
// sqlcore.RequiredQueries, each written as a string literal in the Go
// source of dirs (the package's directory and sqlcore's, with their tests
// and benchmarks) besides the lists of names.
func CheckQueries(t *testing.T, q sqlcore.Queries, own []string, prepare func(context.Context, string) error,
	dirs ...string) {
	t.Helper()
	required := sqlcore.RequiredQueries(own)
	var src strings.Builder
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
		}
	}
	code := src.String()
	for _, name := range q.Names() {
		if !slices.Contains(required, name) {
			t.Errorf("query %s is in the .sql files but not in the required names", name)
		}
		// The lists of names hold each once; a use is a second literal.
		if strings.Count(code, strconv.Quote(name)) < 2 {
			t.Errorf("query %s is not run by the code", name)
		}
		if err := prepare(context.Background(), q[name]); err != nil {
			t.Errorf("query %s does not prepare: %v", name, err)
		}
	}
	if err := q.Require(required...); err != nil {
		t.Error(err)
	}
}
