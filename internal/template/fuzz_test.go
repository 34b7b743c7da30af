package template

import (
	"testing"
)

// FuzzParse feeds arbitrary bytes (and environment names) to Parse. Parse
// must not panic and must return exactly one of a template or a non-empty
// error list; a returned template must be internally consistent. Plain
// `go test` runs only the seeds (f.Add and testdata/fuzz/FuzzParse);
// `go test -fuzz=FuzzParse ./internal/template/` explores further.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validYAML), "")
	f.Add([]byte(diamondYAML), "production")
	f.Add([]byte(schemaYAML), "")
	f.Add([]byte("name: a\nstep_templates:\n  - {name: x, handler_class: X, depends_on_step: x}\n"), "")
	f.Add([]byte("name: a\nstep_templates:\n  - &s {name: b, handler_class: X, <<: *s}\n"), "")
	f.Add([]byte("\xff\xfe{}"), "")
	f.Add([]byte("a: [\n"), "")
	f.Add([]byte(""), "staging")
	f.Add([]byte("name: n\nstep_templates: [{name: a, handler_class: X, handler_config: {a: 1e400, b: -0x1F, c: +.5e-3, d: 1_0.0_1, e: 0777, f: [.inf, 123456789012345678901234567890]}}]\n"), "")
	f.Add([]byte("name: n\nl: &l [1, 2]\nm: &m [*l, *l, *l]\nstep_templates: [{name: a, handler_class: X, handler_config: {v: [*m, *m]}}]\n"), "")
	f.Add([]byte("name: n\nschema: {$defs: {a: {$ref: '#/$defs/b'}, b: {anyOf: [{$ref: '#/$defs/a'}]}}, $ref: '#/$defs/a'}\nstep_templates: [{name: a, handler_class: X}]\n"), "")
	f.Fuzz(func(t *testing.T, data []byte, env string) {
		tm, errs := Parse("fuzz.yml", data, env)
		if tm == nil && len(errs) == 0 {
			t.Fatal("Parse returned neither a template nor errors")
		}
		if tm != nil && errs != nil {
			t.Fatalf("Parse returned a template and errors: %v", errs)
		}
		for _, e := range errs {
			if e == nil || e.File != "fuzz.yml" || e.Msg == "" || e.Line < 0 {
				t.Fatalf("malformed error %#v", e)
			}
			_ = e.Error()
		}
		if tm == nil {
			return
		}
		// A parsed template is acyclic, passes the in-memory checks and
		// renders.
		if got := len(tm.TopoOrder()); got != len(tm.Steps) {
			t.Fatalf("TopoOrder returned %d of %d steps", got, len(tm.Steps))
		}
		if err := NewRegistry().Add(tm); err != nil {
			t.Fatalf("Parse accepted a template that Registry.Add rejects: %v", err)
		}
		_ = Mermaid(tm)
		_ = DOT(tm)
		_ = tm.ValidateContext(nil)
		_ = tm.ValidateContext(data)
	})
}
