package template

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/Masterminds/semver/v3"
	"github.com/tasker-systems/tasker/taskertype"
)

// Registry holds validated templates by namespace, name and version. It is
// safe for concurrent use. Templates handed out by Lookup and List are
// shared: treat them as read-only.
type Registry struct {
	mu    sync.RWMutex
	byKey map[string]*Template
	// byName maps "namespace/name" to its versions, ascending by semver.
	byName map[string][]*Template
	// gen counts successful Adds; changed is closed (and replaced) by each.
	gen     uint64
	changed chan struct{}
	// limits are the handler-class limits of the templates added and of
	// SetHandlerLimit (handlerlimit.go).
	limits handlerLimits
}

// Watch returns the number of templates added so far and a channel that
// is closed when the next one is added (schedulers re-read their schedules
// then).
func (r *Registry) Watch() (generation uint64, changed <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.gen, r.changed
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byKey: map[string]*Template{}, byName: map[string][]*Template{}}
}

// Add validates t and adds it. Templates from Parse are already valid;
// templates built in memory get the zero-value defaults filled in (empty
// namespace, version, max_parallel_steps and step max attempts) and are
// checked by the same rules as Parse, and their schema is compiled. Add
// must not be called with a template that is being read concurrently.
// A non-nil error is a taskertype.TemplateErrors: the template's problems,
// or a single problem when its namespace/name@version is already present
// (naming both files).
func (r *Registry) Add(t *Template) error {
	if t == nil {
		return taskertype.TemplateErrors{{Msg: "template is nil"}}
	}
	if t.Namespace == "" {
		t.Namespace = NamespaceDefault
	}
	if t.Version == "" {
		t.Version = VersionDefault
	}
	if t.MaxParallelSteps == 0 {
		t.MaxParallelSteps = MaxParallelStepsDefault
	}
	for _, s := range t.Steps {
		if s != nil && s.MaxAttempts == 0 {
			s.MaxAttempts = RetryLimitDefault
		}
	}
	if errs := checkTemplate(t); len(errs) > 0 {
		return errs
	}
	if t.schema == nil && len(t.Schema) > 0 {
		sch, err := compileSchema(t.Schema)
		if err != nil {
			var errs taskertype.TemplateErrors
			for _, p := range schemaProblems(err, nil) {
				errs = append(errs, &taskertype.TemplateError{File: t.File, Field: "schema", Msg: p.msg})
			}
			return errs
		}
		t.schema = sch
	}
	if errs := checkSchedules(t); len(errs) > 0 {
		return errs
	}
	if errs := checkRateLimits(t); len(errs) > 0 {
		return errs
	}
	if errs := checkHandlerLimits(t); len(errs) > 0 {
		return errs
	}
	if t.semver == nil {
		t.semver = semver.MustParse(t.Version) // checkTemplate accepted it
	}

	key := t.Key()
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, dup := r.byKey[key]; dup {
		return taskertype.TemplateErrors{{
			File: t.File, Line: t.line, Field: "name",
			Msg: fmt.Sprintf("template %s is defined twice: already loaded from %s", key, fileName(old.File)),
		}}
	}
	if errs := r.rateLimitConflict(t); len(errs) > 0 {
		return errs
	}
	if errs := r.handlerLimitConflict(t); len(errs) > 0 {
		return errs
	}
	r.addHandlerLimits(t)
	r.byKey[key] = t
	name := t.Namespace + "/" + t.Name
	list := append(r.byName[name], t)
	slices.SortFunc(list, compareVersions)
	r.byName[name] = list
	r.gen++
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
	return nil
}

// fileName renders a template's file for a message.
func fileName(f string) string {
	if f == "" {
		return "(built in memory)"
	}
	return f
}

// compareVersions orders templates by semantic version (ties, which differ
// only in build metadata, by version text).
func compareVersions(a, b *Template) int {
	if c := a.semver.Compare(b.semver); c != 0 {
		return c
	}
	return strings.Compare(a.Version, b.Version)
}

// Lookup returns the template namespace/name at version. An empty namespace
// means NamespaceDefault; an empty version means the highest semantic
// version loaded (semver precedence, so 1.10.0 beats 1.9.0 and 2.0.0-rc.1
// beats 1.9.0). A version that is not found verbatim is also matched after
// semver normalization ("v1.2.0" finds 1.2.0). A miss returns a
// *taskertype.TemplateNotFoundError listing the versions that exist.
func (r *Registry) Lookup(namespace, name, version string) (*Template, error) {
	if namespace == "" {
		namespace = NamespaceDefault
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	list := r.byName[namespace+"/"+name]
	if version == "" {
		if len(list) > 0 {
			return list[len(list)-1], nil
		}
	} else {
		for _, t := range list {
			if t.Version == version {
				return t, nil
			}
		}
		if want, err := semver.NewVersion(version); err == nil {
			for _, t := range list {
				if t.semver.Equal(want) && t.semver.Metadata() == want.Metadata() {
					return t, nil
				}
			}
		}
	}
	available := make([]string, len(list))
	for i, t := range list {
		available[i] = t.Key()
	}
	return nil, &taskertype.TemplateNotFoundError{Namespace: namespace, Name: name, Version: version, Available: available}
}

// List returns every template, sorted by namespace, name and semantic
// version.
func (r *Registry) List() []*Template {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Template, 0, len(r.byKey))
	for _, t := range r.byKey {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *Template) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return compareVersions(a, b)
	})
	return out
}

// LoadDir reads every *.yml and *.yaml file under dir (recursively, in
// sorted path order; names starting with "." are skipped, symbolic links to
// directories are not followed), parses each with Parse(path, data, env)
// and adds the valid templates to a new registry.
//
// The registry holds every valid template even when other files have
// problems; the error is then a taskertype.TemplateErrors listing every
// problem of every file. When two files define the same
// namespace/name@version, the first in path order is kept and the second is
// reported. A dir that does not exist or is not a directory is an error
// (wrapping the fs error) with a nil registry.
func LoadDir(dir, env string) (*Registry, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("template directory %q: %w", dir, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("template directory %q is not a directory", dir)
	}
	var errs taskertype.TemplateErrors
	var files []string
	walkErr := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			errs = append(errs, &taskertype.TemplateError{File: path, Msg: "cannot read: " + err.Error()})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yml", ".yaml":
			files = append(files, path)
		}
		return nil
	})
	if walkErr != nil {
		return nil, fmt.Errorf("template directory %q: %w", dir, walkErr)
	}
	slices.Sort(files)

	reg := NewRegistry()
	for _, path := range files {
		data, err := readTemplateFile(path)
		if err != nil {
			errs = append(errs, &taskertype.TemplateError{File: path, Msg: err.Error()})
			continue
		}
		t, perrs := Parse(path, data, env)
		if len(perrs) > 0 {
			errs = append(errs, perrs...)
			continue
		}
		if err := reg.Add(t); err != nil {
			var te taskertype.TemplateErrors
			if errors.As(err, &te) {
				errs = append(errs, te...)
			} else {
				errs = append(errs, &taskertype.TemplateError{File: path, Msg: err.Error()})
			}
		}
	}
	if len(errs) > 0 {
		return reg, errs
	}
	return reg, nil
}

// readTemplateFile reads a template file of at most MaxFileBytes. A bigger
// file, or one that is not a regular file (a FIFO, a device), is refused
// without reading it; a file that grows while being read is refused after
// MaxFileBytes+1 bytes.
func readTemplateFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("cannot read: not a regular file (%s)", info.Mode().Type())
	}
	if info.Size() > MaxFileBytes {
		return nil, errors.New(fileTooBig(info.Size()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if len(data) > MaxFileBytes {
		return nil, errors.New(fileTooBig(int64(len(data))))
	}
	return data, nil
}
