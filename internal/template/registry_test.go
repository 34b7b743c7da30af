package template

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tasker-systems/tasker/taskertype"
)

const registryDir = "testdata/registry"

func TestLoadDir(t *testing.T) {
	t.Parallel()
	reg, err := LoadDir(registryDir, "")
	require.NotNil(t, reg, "the valid templates are loaded despite the bad files")
	require.Error(t, err)
	require.True(t, errors.Is(err, taskertype.ErrInvalidTemplate))
	var errs taskertype.TemplateErrors
	require.True(t, errors.As(err, &errs))

	// Every good file, at every depth, is loaded; hidden directories are
	// skipped; the duplicate keeps the first file in path order.
	var keys []string
	for _, tm := range reg.List() {
		keys = append(keys, tm.Key())
	}
	require.Equal(t, []string{
		"billing/invoice@2.0.0",
		"default/welcome_email@0.1.0",
		"shop/order_fulfillment@1.9.0",
		"shop/order_fulfillment@1.10.0",
		"shop/refund@0.1.0",
	}, keys)
	v19, err19 := reg.Lookup("shop", "order_fulfillment", "1.9.0")
	require.NoError(t, err19)
	require.Equal(t, filepath.Join(registryDir, "shop", "order_v1.yml"), v19.File)

	// Every bad file is reported, with its own problems.
	f := func(rel ...string) string { return filepath.Join(append([]string{registryDir}, rel...)...) }
	want := []struct {
		file  string
		line  int
		field string
		msg   string
	}{
		{f("bad", "cycle.yml"), 5, "step_templates[0].depends_on_step", "cycle: a -> b -> a"},
		{f("bad", "syntax.yml"), 3, "", "invalid YAML"},
		{f("bad", "deeper", "typos.yaml"), 2, "max_parallel_steps", "must be at least 1"},
		{f("bad", "deeper", "typos.yaml"), 5, "step_templates[0].handler_clas", `did you mean "handler_class"?`},
		{f("bad", "env_unknown_step.yml"), 8, "environments.production.step_templates[0].name", `unknown step "b"`},
		{f("bad", "not_utf8.yml"), 2, "", "not valid UTF-8"},
		{f("zz_duplicate_order.yml"), 1, "name", "shop/order_fulfillment@1.9.0 is defined twice: already loaded from " + f("shop", "order_v1.yml")},
	}
	for _, w := range want {
		found := false
		for _, e := range errs {
			if e.File == w.file && e.Line == w.line && e.Field == w.field && strings.Contains(e.Msg, w.msg) {
				found = true
			}
		}
		require.True(t, found, "missing %+v in:\n%s", w, errs.Error())
	}
	for _, e := range errs {
		require.NotContains(t, e.File, ".hidden")
		require.NotContains(t, e.File, "README")
	}
}

func TestLoadDirEnvironment(t *testing.T) {
	t.Parallel()
	reg, _ := LoadDir(registryDir, "production")
	tm, err := reg.Lookup("shop", "order_fulfillment", "")
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"url":     "https://prod.example.com/validate",
		"headers": map[string]any{"accept": "application/json"},
	}, tm.Step("validate").HandlerConfig)
}

func TestLoadDirClean(t *testing.T) {
	t.Parallel()
	reg, err := LoadDir(filepath.Join(registryDir, "shop"), "")
	require.NoError(t, err) // a nil error interface, not a nil TemplateErrors
	require.Nil(t, err)
	require.Len(t, reg.List(), 3)

	empty := t.TempDir()
	reg, err = LoadDir(empty, "")
	require.NoError(t, err)
	require.Empty(t, reg.List())
}

func TestLoadDirMissing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "no_such_dir")
	reg, err := LoadDir(dir, "")
	require.Nil(t, reg)
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.Contains(t, err.Error(), dir)

	file := filepath.Join(registryDir, "welcome.yml")
	_, err = LoadDir(file, "")
	require.ErrorContains(t, err, "is not a directory")
	require.Contains(t, err.Error(), file)
}

func TestLookupVersions(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	for _, v := range []string{"1.9.0", "1.10.0", "1.2.3", "1.10.0-rc.1"} {
		require.NoError(t, reg.Add(mustParse(t, "name: order\nnamespace_name: shop\nversion: "+v+"\nstep_templates: [{name: a, handler_class: X}]\n")))
	}
	require.NoError(t, reg.Add(mustParse(t, "name: order\nstep_templates: [{name: a, handler_class: X}]\n")))

	cases := []struct {
		ns, name, version string
		want              string
	}{
		{"shop", "order", "", "shop/order@1.10.0"}, // semver, not string, order
		{"shop", "order", "1.9.0", "shop/order@1.9.0"},
		{"shop", "order", "1.10.0-rc.1", "shop/order@1.10.0-rc.1"},
		{"shop", "order", "v1.2.3", "shop/order@1.2.3"}, // normalized match
		{"", "order", "", "default/order@0.1.0"},        // "" is the default namespace
		{"default", "order", "0.1.0", "default/order@0.1.0"},
	}
	for _, tc := range cases {
		tm, err := reg.Lookup(tc.ns, tc.name, tc.version)
		require.NoError(t, err, "%+v", tc)
		require.Equal(t, tc.want, tm.Key())
	}

	_, err := reg.Lookup("shop", "order", "2.0.0")
	var nf *taskertype.TemplateNotFoundError
	require.ErrorAs(t, err, &nf)
	require.ErrorIs(t, err, taskertype.ErrNotFound)
	require.Equal(t, "shop", nf.Namespace)
	require.Equal(t, "2.0.0", nf.Version)
	require.Equal(t, []string{"shop/order@1.2.3", "shop/order@1.9.0", "shop/order@1.10.0-rc.1", "shop/order@1.10.0"}, nf.Available)
	require.Contains(t, err.Error(), "shop/order@1.10.0")

	_, err = reg.Lookup("", "missing", "")
	require.ErrorAs(t, err, &nf)
	require.Equal(t, "default", nf.Namespace)
	require.Empty(t, nf.Available)
}

func TestLookupBySemverOrderOnly(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	// Added in an order where neither insertion nor string order is the answer.
	for _, v := range []string{"1.10.0", "1.9.0", "1.2.0"} {
		require.NoError(t, reg.Add(mustParse(t, "name: x\nversion: "+v+"\nstep_templates: [{name: a, handler_class: X}]\n")))
	}
	tm, err := reg.Lookup("", "x", "")
	require.NoError(t, err)
	require.Equal(t, "1.10.0", tm.Version)
}

func TestRegistryAddDuplicate(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	src := []byte("name: x\nstep_templates: [{name: a, handler_class: X}]\n")
	a, _ := Parse("a.yml", src, "")
	b, _ := Parse("b.yml", src, "")
	require.NoError(t, reg.Add(a))
	err := reg.Add(b)
	var errs taskertype.TemplateErrors
	require.ErrorAs(t, err, &errs)
	require.Len(t, errs, 1)
	require.Equal(t, "b.yml", errs[0].File)
	require.Equal(t, 1, errs[0].Line)
	require.Contains(t, errs[0].Msg, "a.yml")
	got, _ := reg.Lookup("", "x", "")
	require.Same(t, a, got)
}

func TestRegistryAddInMemory(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	tm := &Template{
		Name:   "mem",
		Schema: []byte(`{"type":"object","required":["id"]}`),
		Steps: []*StepTemplate{
			{Name: "a", HandlerClass: "tasker:noop", Retryable: true},
			{Name: "b", HandlerClass: "B", DependsOn: []string{"a"}},
		},
	}
	require.NoError(t, reg.Add(tm))
	require.Equal(t, "default/mem@0.1.0", tm.Key())
	require.Equal(t, MaxParallelStepsDefault, tm.MaxParallelSteps)
	require.Equal(t, RetryLimitDefault, tm.Steps[1].MaxAttempts)
	require.Error(t, tm.ValidateContext([]byte(`{}`)))
	require.NoError(t, tm.ValidateContext([]byte(`{"id":1}`)))

	bad := &Template{
		Name:   "bad name",
		Schema: []byte(`{"type":"objekt"}`),
		Steps: []*StepTemplate{
			{Name: "a", HandlerClass: "tasker:bogus", DependsOn: []string{"b"}, Line: 3},
			{Name: "b", HandlerClass: "B", DependsOn: []string{"a"}, TimeoutSeconds: -1, Line: 5},
		},
	}
	err := reg.Add(bad)
	var errs taskertype.TemplateErrors
	require.ErrorAs(t, err, &errs)
	require.Contains(t, err.Error(), `"bad name" is not a valid name`)
	require.Contains(t, err.Error(), "unknown built-in handler")
	require.Contains(t, err.Error(), "step_templates[1].timeout_seconds")

	cyclic := &Template{Name: "cyc", Steps: []*StepTemplate{
		{Name: "a", HandlerClass: "A", DependsOn: []string{"b"}, Line: 3},
		{Name: "b", HandlerClass: "B", DependsOn: []string{"a"}, Line: 5},
	}}
	err = reg.Add(cyclic)
	require.ErrorContains(t, err, "cycle: a -> b -> a")
	require.ErrorAs(t, err, &errs)
	require.Equal(t, 3, errs[0].Line)

	badSchema := &Template{Name: "s", Schema: []byte(`{"type":"objekt"}`), Steps: []*StepTemplate{{Name: "a", HandlerClass: "A"}}}
	err = reg.Add(badSchema)
	require.ErrorAs(t, err, &errs)
	require.Equal(t, "schema", errs[0].Field)

	require.Error(t, reg.Add(nil))
	_, err = reg.Lookup("", "bad name", "")
	require.ErrorIs(t, err, taskertype.ErrNotFound)
}

func TestRegistryConcurrentUse(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			tm, errs := Parse("c.yml", fmt.Appendf(nil, "name: c\nversion: 1.%d.0\nstep_templates: [{name: a, handler_class: X}]\n", i), "")
			require.Nil(t, errs)
			require.NoError(t, reg.Add(tm))
		}()
		go func() {
			defer wg.Done()
			for range 50 {
				if tm, err := reg.Lookup("", "c", ""); err == nil {
					require.Equal(t, "c", tm.Name)
				}
				_ = reg.List()
			}
		}()
	}
	wg.Wait()
	tm, err := reg.Lookup("", "c", "")
	require.NoError(t, err)
	require.Equal(t, "1.7.0", tm.Version)
	require.Len(t, reg.List(), 8)
}

// mustParse parses a valid template.
func mustParse(t *testing.T, src string) *Template {
	t.Helper()
	tm, errs := Parse("t.yml", []byte(src), "")
	require.Nil(t, errs)
	return tm
}
