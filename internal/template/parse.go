package template

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/Masterminds/semver/v3"

	"github.com/tasker-systems/tasker/internal/condition"
	"github.com/tasker-systems/tasker/taskertype"
	"go.yaml.in/yaml/v3"
)

// The YAML keys each level of a template accepts, in documentation order
// (the order also breaks ties between equally close suggestions).
var (
	templateFields    = []string{"name", "namespace_name", "version", "description", "task_handler_class", "schema", "max_parallel_steps", "timeout_seconds", "idempotency_window_seconds", "retention", "retention_failed", "step_templates", "schedules", "concurrency", "rate_limits", "handler_limits", "environments"}
	stepFields        = []string{"name", "description", "handler_class", "handler_config", "depends_on_step", "depends_on_steps", "default_retryable", "default_retry_limit", "timeout_seconds", "skippable", "when", "fan_out", "rate_limit"}
	environmentFields = []string{"step_templates"}
)

// val is one field value read from YAML, with where it came from.
type val[T any] struct {
	v     T
	set   bool // a valid value was given
	bad   bool // a value was given but rejected (already reported)
	line  int
	field string
}

// rawStep is a step entry as read, before defaults and overrides.
type rawStep struct {
	line           int
	field          string // "step_templates[2]" or "environments.prod.step_templates[0]"
	name           val[string]
	description    val[string]
	handlerClass   val[string]
	handlerConfig  val[map[string]any]
	dependsOnStep  val[string]
	dependsOnSteps val[[]val[string]]
	retryable      val[bool]
	retryLimit     val[int]
	timeout        val[int]
	skippable      val[bool]
	when           val[string]
	fanOut         val[*rawFanOut]
	rateLimit      val[string]
}

// apply overlays the fields an environment override sets: handler_config
// is deep-merged, every other field replaces the base value.
func (s *rawStep) apply(o *rawStep) {
	over := func(dst *val[string], src val[string]) {
		if src.set {
			*dst = src
		}
	}
	over(&s.description, o.description)
	over(&s.handlerClass, o.handlerClass)
	over(&s.dependsOnStep, o.dependsOnStep)
	over(&s.when, o.when)
	if o.fanOut.set {
		s.fanOut = o.fanOut
	}
	over(&s.rateLimit, o.rateLimit)
	if o.dependsOnSteps.set {
		s.dependsOnSteps = o.dependsOnSteps
	}
	if o.handlerConfig.set {
		merged := o.handlerConfig
		if s.handlerConfig.set {
			merged.v = deepMerge(s.handlerConfig.v, o.handlerConfig.v)
		}
		s.handlerConfig = merged
	}
	for _, p := range []struct{ dst, src *val[bool] }{{&s.retryable, &o.retryable}, {&s.skippable, &o.skippable}} {
		if p.src.set {
			*p.dst = *p.src
		}
	}
	for _, p := range []struct{ dst, src *val[int] }{{&s.retryLimit, &o.retryLimit}, {&s.timeout, &o.timeout}} {
		if p.src.set {
			*p.dst = *p.src
		}
	}
}

// rawEnv is one entry of environments.
type rawEnv struct {
	name  string
	steps []*rawStep
}

// rawTemplate is a template as read, before defaults and overrides.
type rawTemplate struct {
	name, namespace, version, description, taskHandlerClass val[string]
	schema                                                  val[json.RawMessage]
	schemaNode                                              *yaml.Node
	maxParallel                                             val[int]
	timeout                                                 val[int]
	idemWindow                                              val[int]
	steps                                                   val[[]*rawStep]
	schedules                                               val[[]*rawSchedule]
	concurrency                                             *rawConcurrency
	rateLimits                                              val[[]*rawRateLimit]
	handlerLimits                                           []*rawHandlerLimit
	envs                                                    []*rawEnv
	retention                                               rawRetention
}

// kv is one entry of a YAML mapping.
type kv struct {
	key  string
	line int // line of the key
	val  *yaml.Node
}

// parser collects every problem of one file.
type parser struct {
	file          string
	errs          taskertype.TemplateErrors
	mergeVisits   int
	mergeReported bool
	// expanded counts the text read so far (see MaxExpandedBytes);
	// overBudget is set once it passed the limit (reported once).
	expanded   int
	overBudget bool
	// overrides counts the step overrides read in all environments.
	overrides int
	// dropped counts problems not kept (see errorf).
	dropped int
	// limits are the problems of limits (see limitf), listed first.
	limits taskertype.TemplateErrors
}

// limitf records a limit the file passes. These are listed before every
// other problem (which a file over a limit tends to have many of) and never
// dropped; each limit reports itself once, so they are few.
func (p *parser) limitf(line int, field, step, format string, args ...any) {
	p.limits = append(p.limits, &taskertype.TemplateError{
		File: p.file, Line: line, Field: field, Step: clip(step), Msg: fmt.Sprintf(format, args...),
	})
}

// errorf records a problem. Past ten times maxErrorsPerFile problems it only
// counts them, so that a file with a problem per entry cannot fill memory.
func (p *parser) errorf(line int, field, step, format string, args ...any) {
	if len(p.errs) >= 10*maxErrorsPerFile {
		p.dropped++
		return
	}
	p.errs = append(p.errs, &taskertype.TemplateError{
		File: p.file, Line: line, Field: field, Step: clip(step), Msg: fmt.Sprintf(format, args...),
	})
}

// Parse reads one task template from data (file names it in errors),
// applies the step overrides of environment env ("" applies none) and
// validates the result. It returns the template, or nil and every problem
// found in the file.
//
// Environment overrides (environments.<env>.step_templates) are matched to
// base steps by name: handler_config maps are deep-merged, every other field
// the override sets (scalars and lists) replaces the base value. An override
// naming a step the template does not have is an error in every
// environment, selected or not; an env the template does not mention
// applies no overrides.
//
// The error list is nil exactly when the template is not; compare it with
// nil (or check its length) before storing it in an error variable.
func Parse(file string, data []byte, env string) (*Template, taskertype.TemplateErrors) {
	p := &parser{file: file}
	if len(data) > MaxFileBytes {
		p.limitf(0, "", "", "%s", fileTooBig(int64(len(data))))
		return nil, p.result()
	}
	root := p.document(data)
	if root == nil {
		return nil, p.result()
	}
	rt := p.template(root)
	t := p.build(rt, env)
	if len(p.errs) > 0 || len(p.limits) > 0 {
		return nil, p.result()
	}
	return t, nil
}

// fileTooBig explains why a file of size bytes is refused.
func fileTooBig(size int64) string {
	return fmt.Sprintf("file is %d bytes, more than the limit of %d bytes for a template", size, MaxFileBytes)
}

// result returns the problems ordered by line (stable), never empty: a
// parser that failed without saying why reports that. At most
// maxErrorsPerFile are listed; a last entry counts the rest.
func (p *parser) result() taskertype.TemplateErrors {
	if len(p.errs) == 0 && len(p.limits) == 0 {
		p.errorf(0, "", "", "template could not be read")
	}
	byLine := func(a, b *taskertype.TemplateError) int { return a.Line - b.Line }
	slices.SortStableFunc(p.limits, byLine)
	slices.SortStableFunc(p.errs, byLine)
	p.errs = append(p.limits, p.errs...)
	if n := len(p.errs) + p.dropped; n > maxErrorsPerFile {
		p.errs = p.errs[:maxErrorsPerFile:maxErrorsPerFile]
		p.errorf(0, "", "", "%d more problems not listed", n-maxErrorsPerFile)
	}
	return p.errs
}

// document checks the encoding, parses the YAML and returns the root
// mapping, or nil after reporting why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	if off := invalidUTF8(data); off >= 0 {
		line := 1 + bytes.Count(data[:off], []byte("\n"))
		p.errorf(line, "", "", "file is not valid UTF-8 text (byte 0x%02x at offset %d)", data[off], off)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decodeNode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, "", "", "file is empty: expected a task template (a YAML mapping)")
		} else {
			p.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := decodeNode(dec, &extra); err == nil {
		p.errorf(extra.Line, "", "", "file holds more than one YAML document: put one template per file")
	} else if !errors.Is(err, io.EOF) {
		p.yamlError(err)
	}
	root := resolve(&doc)
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			p.errorf(root.Line, "", "", "file is empty: expected a task template (a YAML mapping)")
			return nil
		}
		root = resolve(root.Content[0])
	}
	if isNull(root) {
		p.errorf(0, "", "", "file is empty: expected a task template (a YAML mapping)")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "", "", "a task template must be a YAML mapping, got %s", describe(root))
		return nil
	}
	return root
}

// invalidUTF8 returns the offset of the first byte that is not valid UTF-8,
// or -1.
func invalidUTF8(data []byte) int {
	if utf8.Valid(data) {
		return -1
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}

// decodeNode decodes the next document, turning a panic of the YAML library
// into an error.
func decodeNode(dec *yaml.Decoder, out *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: YAML parser failed: %v", r)
		}
	}()
	return dec.Decode(out)
}

var yamlLineRe = regexp.MustCompile(`^line (\d+): `)

// yamlError reports a YAML syntax error with the line the library names.
func (p *parser) yamlError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	p.errorf(line, "", "", "invalid YAML: %s", msg)
}

// template reads the top-level mapping.
func (p *parser) template(root *yaml.Node) *rawTemplate {
	rt := &rawTemplate{}
	for _, f := range p.mapping(root, "", "", 0) {
		switch f.key {
		case "name":
			rt.name = p.identifier(f.val, "name", "")
		case "namespace_name":
			rt.namespace = p.identifier(f.val, "namespace_name", "")
		case "version":
			rt.version = p.version(f.val)
		case "description":
			rt.description = p.text(f.val, "description", "")
		case "task_handler_class":
			rt.taskHandlerClass = p.className(f.val, "task_handler_class", "", false)
		case "schema":
			rt.schema, rt.schemaNode = p.schema(f.val), f.val
		case "max_parallel_steps":
			rt.maxParallel = p.integer(f.val, "max_parallel_steps", "", 1)
		case "timeout_seconds":
			rt.timeout = p.integer(f.val, "timeout_seconds", "", 1)
		case "idempotency_window_seconds":
			// At least a minute: a cron tick's key must outlive the grace in
			// which runners may still create that tick (at most a minute).
			rt.idemWindow = p.integer(f.val, "idempotency_window_seconds", "", 60)
		case "step_templates":
			rt.steps = p.steps(f.val, "step_templates", false)
		case "schedules":
			rt.schedules = p.schedules(f.val)
		case "concurrency":
			rt.concurrency = p.concurrency(f.val, f.line)
		case "rate_limits":
			rt.rateLimits = p.rateLimits(f.val)
		case "handler_limits":
			rt.handlerLimits = p.handlerLimits(f.val)
		case "environments":
			rt.envs = p.environments(f.val)
		default:
			if p.templateRetention(rt, f) {
				continue
			}
			p.unknown(f, "", "", templateFields)
		}
	}
	if !rt.name.set && !rt.name.bad {
		p.errorf(root.Line, "name", "", "missing required field")
	}
	if !rt.steps.set && !rt.steps.bad {
		p.errorf(root.Line, "step_templates", "", "missing required field: a template needs at least one step")
	}
	return rt
}

// mapping returns the entries of a mapping node in order, with merge keys
// (<<) expanded (explicit keys win, then earlier merge sources). Duplicate
// and non-string keys are reported and dropped.
func (p *parser) mapping(n *yaml.Node, field, step string, depth int) []kv {
	var out, merged []kv
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		rk := resolve(k)
		if rk.Kind == yaml.ScalarNode && rk.ShortTag() == "!!merge" {
			merged = append(merged, p.mergeSources(v, field, step, depth)...)
			continue
		}
		if rk.Kind != yaml.ScalarNode || rk.ShortTag() != "!!str" {
			p.errorf(k.Line, field, step, "field names must be strings, got %s", describe(rk))
			continue
		}
		if !p.spend(k.Line, field, step, len(rk.Value)+1) {
			return nil
		}
		if first, dup := seen[rk.Value]; dup {
			p.errorf(k.Line, join(field, clip(rk.Value)), step, "duplicate field %s (first set at line %d)", quote(rk.Value), first)
			continue
		}
		seen[rk.Value] = k.Line
		out = append(out, kv{key: rk.Value, line: k.Line, val: v})
	}
	for _, m := range merged {
		if _, ok := seen[m.key]; !ok {
			seen[m.key] = m.line
			out = append(out, m)
		}
	}
	return out
}

// mergeSources reads the value of a merge key: a mapping or a list of them.
func (p *parser) mergeSources(v *yaml.Node, field, step string, depth int) []kv {
	line := v.Line
	rv := resolve(v)
	if depth >= maxMergeDepth || p.mergeVisits >= maxMergeVisits {
		if !p.mergeReported {
			p.mergeReported = true
			p.errorf(line, field, step, "merge keys (<<) nest too deeply or repeat too often (a merge may include itself)")
		}
		return nil
	}
	p.mergeVisits++
	switch rv.Kind {
	case yaml.MappingNode:
		return p.mapping(rv, field, step, depth+1)
	case yaml.SequenceNode:
		var out []kv
		seen := map[string]bool{}
		for _, item := range rv.Content {
			ri := resolve(item)
			if ri.Kind != yaml.MappingNode {
				p.errorf(item.Line, field, step, "a merge key (<<) takes a mapping or a list of mappings, got %s", describe(ri))
				continue
			}
			p.mergeVisits++
			for _, e := range p.mapping(ri, field, step, depth+1) {
				if !seen[e.key] {
					seen[e.key] = true
					out = append(out, e)
				}
			}
		}
		return out
	default:
		p.errorf(line, field, step, "a merge key (<<) takes a mapping or a list of mappings, got %s", describe(rv))
		return nil
	}
}

// join appends a key to a field path.
func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// unknown reports a key the level does not accept.
func (p *parser) unknown(f kv, prefix, step string, known []string) {
	msg := "unknown field " + quote(f.key)
	if s := suggest(f.key, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		msg += " (known fields: " + strings.Join(known, ", ") + ")"
	}
	p.errorf(f.line, join(prefix, clip(f.key)), step, "%s", msg)
}

// text reads a string value; null means omitted.
func (p *parser) text(n *yaml.Node, field, step string) val[string] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[string]{}
	}
	if r.Kind != yaml.ScalarNode || r.ShortTag() != "!!str" {
		p.errorf(line, field, step, "expected a string, got %s", describe(r))
		return val[string]{bad: true, line: line, field: field}
	}
	if !p.spend(line, field, step, len(r.Value)) {
		return val[string]{bad: true, line: line, field: field}
	}
	return val[string]{v: r.Value, set: true, line: line, field: field}
}

// identifier reads a name that must satisfy the identifier rule. A rejected
// name keeps its text in v (with set false) so messages can still name it.
func (p *parser) identifier(n *yaml.Node, field, step string) val[string] {
	v := p.text(n, field, step)
	if !v.set {
		return v
	}
	if msg := identProblem(v.v); msg != "" {
		p.errorf(v.line, field, step, "%s", msg)
		v.set, v.bad = false, true
	}
	return v
}

// className reads a handler class name; for steps it also checks built-in
// handler names.
func (p *parser) className(n *yaml.Node, field, step string, isStep bool) val[string] {
	v := p.text(n, field, step)
	if !v.set {
		return v
	}
	if msg := handlerProblem(v.v, isStep); msg != "" {
		p.errorf(v.line, field, step, "%s", msg)
		v.set, v.bad = false, true
	}
	return v
}

// version reads the template version (any scalar, as text) and checks it is
// a strict semantic version.
func (p *parser) version(n *yaml.Node) val[string] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[string]{}
	}
	if r.Kind != yaml.ScalarNode {
		p.errorf(line, "version", "", "expected a version string such as \"1.0.0\", got %s", describe(r))
		return val[string]{bad: true}
	}
	if msg := versionProblem(r.Value); msg != "" {
		p.errorf(line, "version", "", "%s", msg)
		return val[string]{bad: true}
	}
	return val[string]{v: r.Value, set: true, line: line, field: "version"}
}

// integer reads an integer that must be at least minimum (and fit the
// store's 32-bit columns).
func (p *parser) integer(n *yaml.Node, field, step string, minimum int64) val[int] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[int]{}
	}
	bad := val[int]{bad: true, line: line, field: field}
	if r.Kind != yaml.ScalarNode || r.ShortTag() != "!!int" {
		p.errorf(line, field, step, "expected an integer, got %s", describe(r))
		return bad
	}
	var i int64
	if err := safeDecode(r, &i); err != nil {
		p.errorf(line, field, step, "integer %s is out of range", clip(r.Value))
		return bad
	}
	if msg := rangeProblem(i, minimum); msg != "" {
		p.errorf(line, field, step, "%s", msg)
		return bad
	}
	return val[int]{v: int(i), set: true, line: line, field: field}
}

// boolean reads true or false.
func (p *parser) boolean(n *yaml.Node, field, step string) val[bool] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[bool]{}
	}
	var b bool
	if r.Kind != yaml.ScalarNode || r.ShortTag() != "!!bool" || safeDecode(r, &b) != nil {
		p.errorf(line, field, step, "expected a boolean (true or false), got %s", describe(r))
		return val[bool]{bad: true, line: line, field: field}
	}
	return val[bool]{v: b, set: true, line: line, field: field}
}

// object reads a free-form mapping (handler_config).
func (p *parser) object(n *yaml.Node, field, step string) val[map[string]any] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[map[string]any]{}
	}
	bad := val[map[string]any]{bad: true, line: line, field: field}
	if r.Kind != yaml.MappingNode {
		p.errorf(line, field, step, "expected a mapping, got %s", describe(r))
		return bad
	}
	v, ok := p.jsonValue(r, field, step)
	if !ok {
		return bad
	}
	m, ok := v.(map[string]any)
	if !ok { // an empty mapping decodes to a map; anything else is a bug
		m = map[string]any{}
	}
	return val[map[string]any]{v: m, set: true, line: line, field: field}
}

// stringList reads depends_on_steps: a list of non-empty strings.
func (p *parser) stringList(n *yaml.Node, field, step string) val[[]val[string]] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[[]val[string]]{}
	}
	if r.Kind != yaml.SequenceNode {
		hint := ""
		if r.Kind == yaml.ScalarNode && r.ShortTag() == "!!str" {
			hint = " (write [" + clip(r.Value) + "] or use depends_on_step for a single parent)"
		}
		p.errorf(line, field, step, "expected a list of step names, got %s%s", describe(r), hint)
		return val[[]val[string]]{bad: true, line: line, field: field}
	}
	out := val[[]val[string]]{set: true, line: line, field: field}
	for i, item := range r.Content {
		v := p.stepRef(item, fmt.Sprintf("%s[%d]", field, i), step)
		if v.set {
			v.field = field // report dependency problems against the list
			out.v = append(out.v, v)
		}
	}
	return out
}

// stepRef reads one parent step name.
func (p *parser) stepRef(n *yaml.Node, field, step string) val[string] {
	v := p.text(n, field, step)
	if v.set && strings.TrimSpace(v.v) == "" {
		p.errorf(v.line, field, step, "a parent step name must not be empty")
		v.set, v.bad = false, true
	}
	return v
}

// schema reads the context JSON Schema (a mapping, or a boolean schema).
func (p *parser) schema(n *yaml.Node) val[json.RawMessage] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[json.RawMessage]{}
	}
	bad := val[json.RawMessage]{bad: true, line: line, field: "schema"}
	if r.Kind != yaml.MappingNode && !(r.Kind == yaml.ScalarNode && r.ShortTag() == "!!bool") {
		p.errorf(line, "schema", "", "expected a JSON Schema (a mapping), got %s", describe(r))
		return bad
	}
	v, ok := p.jsonValue(r, "schema", "")
	if !ok {
		return bad
	}
	raw, err := toJSON(v)
	if err != nil {
		p.errorf(line, "schema", "", "invalid JSON Schema: %v", err)
		return bad
	}
	return val[json.RawMessage]{v: raw, set: true, line: line, field: "schema"}
}

// steps reads a step_templates list; overrides need only name the step.
func (p *parser) steps(n *yaml.Node, field string, override bool) val[[]*rawStep] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[[]*rawStep]{}
	}
	if r.Kind != yaml.SequenceNode {
		p.errorf(line, field, "", "expected a list of steps, got %s", describe(r))
		return val[[]*rawStep]{bad: true}
	}
	if len(r.Content) == 0 && !override {
		p.errorf(line, field, "", "a template needs at least one step")
		return val[[]*rawStep]{bad: true}
	}
	if len(r.Content) > MaxSteps {
		p.limitf(line, field, "", "%d steps, more than the limit of %d steps in a template", len(r.Content), MaxSteps)
		return val[[]*rawStep]{bad: true}
	}
	if override {
		if p.overrides += len(r.Content); p.overrides > MaxSteps {
			p.limitf(line, field, "", "the environments override more than %d steps in all (the limit)", MaxSteps)
			return val[[]*rawStep]{bad: true}
		}
	}
	out := val[[]*rawStep]{set: true, line: line, field: field}
	for i, item := range r.Content {
		if p.overBudget {
			break
		}
		if s := p.step(item, fmt.Sprintf("%s[%d]", field, i), override); s != nil {
			out.v = append(out.v, s)
		}
	}
	return out
}

// step reads one step entry.
func (p *parser) step(n *yaml.Node, field string, override bool) *rawStep {
	line := n.Line
	r := resolve(n)
	if r.Kind != yaml.MappingNode {
		p.errorf(line, field, "", "expected a step (a mapping with name and handler_class), got %s", describe(r))
		return nil
	}
	s := &rawStep{line: line, field: field}
	fields := p.mapping(r, field, "", 0)
	for _, f := range fields {
		if f.key == "name" {
			s.name = p.identifier(f.val, field+".name", "")
		}
	}
	step := s.name.v
	for _, f := range fields {
		fld := field + "." + f.key
		switch f.key {
		case "name":
		case "description":
			s.description = p.text(f.val, fld, step)
		case "handler_class":
			s.handlerClass = p.className(f.val, fld, step, true)
		case "handler_config":
			s.handlerConfig = p.object(f.val, fld, step)
		case "depends_on_step":
			s.dependsOnStep = p.stepRef(f.val, fld, step)
		case "depends_on_steps":
			s.dependsOnSteps = p.stringList(f.val, fld, step)
		case "default_retryable":
			s.retryable = p.boolean(f.val, fld, step)
		case "default_retry_limit":
			s.retryLimit = p.integer(f.val, fld, step, 1)
		case "timeout_seconds":
			s.timeout = p.integer(f.val, fld, step, 0)
		case "skippable":
			s.skippable = p.boolean(f.val, fld, step)
		case "when":
			s.when = p.text(f.val, fld, step)
		case "fan_out":
			s.fanOut = p.fanOut(f.val, fld, step)
		case "rate_limit":
			s.rateLimit = p.identifier(f.val, fld, step)
		default:
			p.unknown(f, field, step, stepFields)
		}
	}
	if !s.name.set && !s.name.bad {
		p.errorf(line, field+".name", "", "missing required field")
	}
	if !override && !s.handlerClass.set && !s.handlerClass.bad {
		p.errorf(line, field+".handler_class", step, "missing required field")
	}
	return s
}

// environments reads the per-environment overrides.
func (p *parser) environments(n *yaml.Node) []*rawEnv {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return nil
	}
	if r.Kind != yaml.MappingNode {
		p.errorf(line, "environments", "", "expected a mapping of environment names to overrides, got %s", describe(r))
		return nil
	}
	var out []*rawEnv
	for _, f := range p.mapping(r, "environments", "", 0) {
		field := "environments." + clip(f.key)
		if msg := identProblem(f.key); msg != "" {
			p.errorf(f.line, field, "", "environment name: %s", msg)
			continue
		}
		env := &rawEnv{name: f.key}
		out = append(out, env)
		body := resolve(f.val)
		if isNull(body) {
			continue
		}
		if body.Kind != yaml.MappingNode {
			p.errorf(f.val.Line, field, "", "expected a mapping with step_templates, got %s", describe(body))
			continue
		}
		for _, g := range p.mapping(body, field, "", 0) {
			if g.key != "step_templates" {
				p.unknown(g, field, "", environmentFields)
				continue
			}
			env.steps = p.steps(g.val, field+".step_templates", true).v
		}
	}
	return out
}

// build applies defaults and the selected environment's overrides, compiles
// the schema and checks the step graph.
func (p *parser) build(rt *rawTemplate, env string) *Template {
	t := &Template{
		File:             p.file,
		Name:             rt.name.v,
		Namespace:        NamespaceDefault,
		Version:          VersionDefault,
		Description:      rt.description.v,
		TaskHandlerClass: rt.taskHandlerClass.v,
		MaxParallelSteps: MaxParallelStepsDefault,
		line:             rt.name.line,
	}
	if rt.namespace.set {
		t.Namespace = rt.namespace.v
	}
	if rt.version.set {
		t.Version = rt.version.v
	}
	t.semver, _ = semver.StrictNewVersion(t.Version)
	if rt.maxParallel.set {
		t.MaxParallelSteps = rt.maxParallel.v
	}
	if rt.timeout.set {
		t.TimeoutSeconds = rt.timeout.v
	}
	if rt.idemWindow.set {
		t.IdempotencyWindowSeconds = rt.idemWindow.v
	}
	p.buildRetention(t, rt)

	// Work on copies so the base entries stay as read.
	steps := make([]*rawStep, len(rt.steps.v))
	byName := map[string]*rawStep{}
	var names []string
	for i, s := range rt.steps.v {
		c := *s
		steps[i] = &c
		if s.name.set {
			if _, dup := byName[s.name.v]; !dup {
				byName[s.name.v] = &c
				names = append(names, s.name.v)
			}
		}
	}
	for _, e := range rt.envs {
		seen := map[string]int{}
		for _, o := range e.steps {
			if !o.name.set {
				continue // already reported
			}
			if first, dup := seen[o.name.v]; dup {
				p.errorf(o.name.line, o.field+".name", o.name.v, "environment %q overrides this step twice (first at line %d)", e.name, first)
				continue
			}
			seen[o.name.v] = o.name.line
			b := byName[o.name.v]
			if b == nil {
				if rt.steps.set || len(rt.steps.v) > 0 {
					p.errorf(o.name.line, o.field+".name", o.name.v, "environment %q overrides unknown step %q%s", e.name, o.name.v, didYouMean(o.name.v, names))
				}
				continue
			}
			if e.name == env {
				b.apply(o)
			}
		}
	}

	site := &parseSite{steps: steps, deps: make([]map[string]val[string], len(steps))}
	ignore := map[string]bool{}
	for i, s := range steps {
		st := &StepTemplate{
			Name:           s.name.v,
			Description:    s.description.v,
			HandlerClass:   s.handlerClass.v,
			Retryable:      true,
			MaxAttempts:    RetryLimitDefault,
			TimeoutSeconds: s.timeout.v,
			Skippable:      s.skippable.v,
			Line:           s.line,
		}
		if !s.name.set {
			st.Name = ""
			if s.name.bad {
				ignore[s.name.v] = true // invalid name, reported; do not also call it unknown
			}
		}
		if s.handlerConfig.set {
			st.HandlerConfig = deepMerge(nil, s.handlerConfig.v)
		}
		if s.retryable.set {
			st.Retryable = s.retryable.v
		}
		if s.retryLimit.set {
			st.MaxAttempts = s.retryLimit.v
		}
		site.deps[i] = map[string]val[string]{}
		add := func(d val[string]) {
			if _, dup := site.deps[i][d.v]; d.set && !dup {
				site.deps[i][d.v] = d
				st.DependsOn = append(st.DependsOn, d.v)
			}
		}
		add(s.dependsOnStep)
		for _, d := range s.dependsOnSteps.v {
			add(d)
		}
		if s.when.set {
			p.when(st, s.when)
		}
		p.buildFanOut(t, st, s.fanOut)
		if st.Condition != nil {
			if t.conditions == nil {
				t.conditions = map[string]*condition.Condition{}
			}
			t.conditions[st.Name] = st.Condition
		}
		t.Steps = append(t.Steps, st)
	}

	if rt.schema.set {
		t.Schema = rt.schema.v
		sch, err := compileSchema(t.Schema)
		if err != nil {
			for _, se := range schemaProblems(err, rt.schemaNode) {
				p.errorf(se.line, "schema", "", "%s", se.msg)
			}
		}
		t.schema = sch
	}
	p.buildSchedules(t, rt.schedules.v)
	p.buildConcurrency(t, rt.concurrency)
	p.checkCatchUpRetention(t, rt)
	p.buildRateLimits(t, rt.rateLimits.v, steps)
	p.buildHandlerLimits(t, rt.handlerLimits)

	p.errs = append(p.errs, checkGraph(t, site, ignore)...)
	return t
}

// when compiles a step's `when` expression and checks that every parent
// result it reads (results.NAME or results["NAME"]) is one of the step's
// parents: the only results a step receives.
func (p *parser) when(st *StepTemplate, w val[string]) {
	c, err := condition.Compile(w.v)
	if err != nil {
		p.errorf(w.line, w.field, st.Name, "%v", err)
		return
	}
	for _, m := range resultRef.FindAllStringSubmatch(w.v, -1) {
		name := cmp.Or(m[1], m[2])
		if !slices.Contains(st.DependsOn, name) {
			p.errorf(w.line, w.field, st.Name, "reads results.%s, but %s is not a parent of %s (parents: %s)",
				name, name, st.Name, cmp.Or(strings.Join(st.DependsOn, ", "), "none"))
			return
		}
	}
	st.When, st.Condition = w.v, c
}

// resultRef finds the parent names a `when` expression reads.
var resultRef = regexp.MustCompile(`\bresults(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*"([^"]*)"\s*\])`)

// parseSite locates graph problems in the YAML that was read.
type parseSite struct {
	steps []*rawStep
	deps  []map[string]val[string]
}

func (s *parseSite) step(i int) (int, string) {
	st := s.steps[i]
	if st.name.line > 0 {
		return st.name.line, st.field
	}
	return st.line, st.field
}

func (s *parseSite) dep(i int, name string) (int, string) {
	if d, ok := s.deps[i][name]; ok {
		return d.line, d.field
	}
	return s.steps[i].line, s.steps[i].field + ".depends_on_steps"
}
