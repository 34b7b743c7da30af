package builtin

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/taskertype"
)

// config reads one step's handler_config tolerantly and reports problems as
// permanent errors naming the handler, the step and the key.
type config struct {
	handler string
	step    string
	m       map[string]any
}

func newConfig(handler string, step *taskertype.StepContext) config {
	return config{handler: handler, step: step.StepName, m: step.HandlerConfig}
}

// errorf returns a permanent error about handler_config.key.
func (c config) errorf(key, format string, args ...any) error {
	return taskertype.Permanent(fmt.Errorf("%s: step %q: handler_config.%s: %s",
		c.handler, c.step, key, fmt.Sprintf(format, args...)))
}

// get returns the value of key; a nil value counts as absent.
func (c config) get(key string) (any, bool) {
	v, ok := c.m[key]
	if !ok || v == nil {
		return nil, false
	}
	return v, true
}

// str returns a string setting, def when absent.
func (c config) str(key, def string) (string, error) {
	v, ok := c.get(key)
	if !ok {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", c.errorf(key, "must be a string, got %s", typeName(v))
	}
	return s, nil
}

// boolean returns a boolean setting, def when absent.
func (c config) boolean(key string, def bool) (bool, error) {
	v, ok := c.get(key)
	if !ok {
		return def, nil
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		if p, err := strconv.ParseBool(strings.TrimSpace(b)); err == nil {
			return p, nil
		}
	}
	return false, c.errorf(key, "must be a boolean, got %s", describe(v))
}

// number returns a numeric setting; ok is false when absent.
func (c config) number(key string) (f float64, ok bool, err error) {
	v, present := c.get(key)
	if !present {
		return 0, false, nil
	}
	f, isNum := toFloat(v)
	if !isNum {
		return 0, false, c.errorf(key, "must be a number, got %s", describe(v))
	}
	return f, true, nil
}

// integer returns an integral setting; ok is false when absent.
func (c config) integer(key string) (n int, ok bool, err error) {
	f, ok, err := c.number(key)
	if err != nil || !ok {
		return 0, ok, err
	}
	if f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
		return 0, false, c.errorf(key, "must be a whole number, got %v", f)
	}
	return int(f), true, nil
}

// seconds returns a positive duration given in (possibly fractional)
// seconds; ok is false when absent.
func (c config) seconds(key string) (time.Duration, bool, error) {
	f, ok, err := c.number(key)
	if err != nil || !ok {
		return 0, ok, err
	}
	if f <= 0 || f > math.MaxInt64/float64(time.Second) {
		return 0, false, c.errorf(key, "must be a positive number of seconds, got %v", f)
	}
	return time.Duration(f * float64(time.Second)), true, nil
}

// intList returns a list of whole numbers (nil when absent).
func (c config) intList(key string) ([]int, error) {
	v, ok := c.get(key)
	if !ok {
		return nil, nil
	}
	items, ok := asList(v)
	if !ok {
		return nil, c.errorf(key, "must be a list of whole numbers, got %s", typeName(v))
	}
	out := make([]int, 0, len(items))
	for i, it := range items {
		f, isNum := toFloat(it)
		if !isNum || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
			return nil, c.errorf(fmt.Sprintf("%s[%d]", key, i), "must be a whole number, got %s", describe(it))
		}
		out = append(out, int(f))
	}
	return out, nil
}

// stringMap returns a map setting with string keys (nil when absent). The
// values are left as they are, for expansion.
func (c config) stringMap(key string) (map[string]any, error) {
	v, ok := c.get(key)
	if !ok {
		return nil, nil
	}
	m, ok := asMap(v)
	if !ok {
		return nil, c.errorf(key, "must be a map, got %s", typeName(v))
	}
	return m, nil
}

// toFloat converts any numeric representation to float64.
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	case float32:
		return toFloat(float64(n))
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case int16:
		return float64(n), true
	case int8:
		return float64(n), true
	case uint:
		return float64(n), true
	case uint64:
		return float64(n), true
	case uint32:
		return float64(n), true
	case uint16:
		return float64(n), true
	case uint8:
		return float64(n), true
	case json.Number:
		return toFloat(string(n))
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err != nil {
			return 0, false
		}
		return toFloat(f)
	}
	return 0, false
}

// asList returns v's elements when v is a slice or array of any type.
func asList(v any) ([]any, bool) {
	if l, ok := v.([]any); ok {
		return l, true
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return nil, false
	}
	if rv.Type().Elem().Kind() == reflect.Uint8 {
		return nil, false // []byte and json.RawMessage are not lists
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, true
}

// asMap returns v as map[string]any when v is a map with string keys (or
// interface keys that all hold strings, as some YAML decoders produce).
func asMap(v any) (map[string]any, bool) {
	if m, ok := v.(map[string]any); ok {
		return m, true
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Map {
		return nil, false
	}
	out := make(map[string]any, rv.Len())
	iter := rv.MapRange()
	for iter.Next() {
		k := iter.Key()
		if k.Kind() == reflect.Interface {
			k = k.Elem()
		}
		if k.Kind() != reflect.String {
			return nil, false
		}
		out[k.String()] = iter.Value().Interface()
	}
	return out, true
}

// sortedKeys returns m's keys in order, for deterministic output.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// typeName names v's type in handler_config terms.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	}
	if _, ok := toFloat(v); ok {
		return "a number"
	}
	if _, ok := asList(v); ok {
		return "a list"
	}
	if _, ok := asMap(v); ok {
		return "a map"
	}
	return fmt.Sprintf("%T", v)
}

// describe shows a short form of v for error messages.
func describe(v any) string {
	if s, ok := v.(string); ok {
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return strconv.Quote(s)
	}
	return typeName(v)
}
