package storetest

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tasker-systems/tasker/internal/store/sqlcore"
)

// CheckQueryNames fails t unless the named queries q of a database package
// are exactly the names its code runs: required (sqlcore.CoreQueries and
// the package's own list), and each of them written as a string literal in
// the Go source of the package (dirs, its directory and sqlcore's, with
// their tests and benchmarks) besides the lists of names.
func CheckQueryNames(t *testing.T, q sqlcore.Queries, required []string, dirs ...string) {
	t.Helper()
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
	}
	if err := q.Require(required...); err != nil {
		t.Error(err)
	}
}
