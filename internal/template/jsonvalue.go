package template

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// nonPlain are the scalar styles that make a YAML scalar a string whatever
// its text (quotes, block scalars) or give it an explicit tag.
const nonPlain = yaml.TaggedStyle | yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle

// jsonConv converts one YAML value (a schema or a handler_config) into a
// JSON value, reporting problems against field and step.
type jsonConv struct {
	p           *parser
	field, step string
	failed      bool
}

// jsonValue converts a YAML node into a value encoding/json encodes
// exactly: map[string]any, []any, string, bool, nil and json.Number. A
// number keeps the digits written (in JSON syntax: "+1" is 1, ".5" is 0.5,
// "1_000" is 1000, 0x1F is 31), however many, so big integers and values
// such as 1e400 survive; NaN and infinities are refused. Timestamps become
// RFC 3339 strings. Mappings may use merge keys. Nesting deeper than
// MaxNestingDepth, numbers beyond MaxNumberDigits or MaxNumberExponent and
// expansion beyond MaxExpandedBytes are reported (at field and step, with
// the value's line and JSON pointer); ok is false after any problem.
func (p *parser) jsonValue(n *yaml.Node, field, step string) (v any, ok bool) {
	c := &jsonConv{p: p, field: field, step: step}
	v = c.value(n, "", 1)
	return v, !c.failed
}

// fail reports a problem of the value at path (a JSON pointer).
func (c *jsonConv) fail(line int, path, format string, args ...any) {
	c.failed = true
	c.p.errorf(line, c.field, c.step, "%s: %s", where(path), fmt.Sprintf(format, args...))
}

// limit reports a limit the value at path passes.
func (c *jsonConv) limit(line int, path, format string, args ...any) {
	c.failed = true
	c.p.limitf(line, c.field, c.step, "%s: %s", where(path), fmt.Sprintf(format, args...))
}

// value converts n, the value at path, nested depth levels deep.
func (c *jsonConv) value(n *yaml.Node, path string, depth int) any {
	if c.failed || c.p.overBudget {
		c.failed = true
		return nil
	}
	line := n.Line
	r := resolve(n)
	if r == nil {
		return nil
	}
	switch r.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		if depth > MaxNestingDepth {
			c.limit(line, path, "nested more than %d levels deep (the limit for a schema or handler_config)", MaxNestingDepth)
			return nil
		}
		if !c.p.spend(r.Line, c.field, c.step, 2) {
			c.failed = true
			return nil
		}
		if r.Kind == yaml.SequenceNode {
			out := make([]any, 0, len(r.Content))
			for i, item := range r.Content {
				if !c.p.spend(item.Line, c.field, c.step, 1) {
					c.failed = true
					return nil
				}
				out = append(out, c.value(item, path+"/"+strconv.Itoa(i), depth+1))
				if c.failed {
					return nil
				}
			}
			return out
		}
		fields := c.p.mapping(r, c.field, c.step, 0)
		out := make(map[string]any, len(fields))
		for _, f := range fields {
			out[f.key] = c.value(f.val, path+"/"+escapePointer(f.key), depth+1)
			if c.failed {
				return nil
			}
		}
		return out
	case yaml.ScalarNode:
		if !c.p.spend(line, c.field, c.step, len(r.Value)+1) {
			c.failed = true
			return nil
		}
		return c.scalar(r, line, path)
	default:
		c.fail(line, path, "unsupported YAML value (%s)", describe(r))
		return nil
	}
}

// scalar converts one scalar node.
func (c *jsonConv) scalar(r *yaml.Node, line int, path string) any {
	plain := r.Style&nonPlain == 0
	switch tag := r.ShortTag(); tag {
	case "!!str":
		if plain { // a number YAML could not hold in a float64, such as 1e400
			if num, ok := c.number(r.Value, line, path); ok {
				return num
			}
		}
		return r.Value
	case "!!null":
		return nil
	case "!!float":
		if num, ok := c.number(r.Value, line, path); ok {
			return num
		}
	case "!!int":
		if plainDecimal(r.Value) {
			if num, ok := c.number(r.Value, line, path); ok {
				return num
			}
			return nil
		}
		if r.Style&yaml.TaggedStyle == 0 {
			// YAML's own reading: 0x1F, 0o17 and 017 are 31, 15 and 15.
			var v any
			if err := safeDecode(r, &v); err == nil {
				switch i := v.(type) {
				case int:
					return json.Number(strconv.Itoa(i))
				case int64:
					return json.Number(strconv.FormatInt(i, 10))
				case uint64:
					return json.Number(strconv.FormatUint(i, 10))
				}
			}
		}
		if num, ok := c.number(r.Value, line, path); ok {
			return num
		}
	}
	if c.failed {
		return nil
	}
	var v any
	if err := safeDecode(r, &v); err != nil {
		c.fail(line, path, "%v", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil
	}
	switch x := v.(type) {
	case nil, string, bool:
		return x
	case int:
		return json.Number(strconv.Itoa(x))
	case int64:
		return json.Number(strconv.FormatInt(x, 10))
	case uint64:
		return json.Number(strconv.FormatUint(x, 10))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			c.fail(line, path, "%v cannot be represented in JSON", x)
			return nil
		}
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
	case time.Time:
		return x.Format(time.RFC3339Nano)
	default:
		c.fail(line, path, "unsupported value of type %T", v)
		return nil
	}
}

// number returns s as a JSON number when it is a decimal number, keeping
// every digit. ok is false when s is not a decimal number, or when it is
// one beyond the limits (then reported).
func (c *jsonConv) number(s string, line int, path string) (json.Number, bool) {
	num, digits, exp, ok := canonNumber(s)
	if !ok {
		return "", false
	}
	switch {
	case digits > MaxNumberDigits:
		c.limit(line, path, "number %s has %d digits, more than the limit of %d", clip(s), digits, MaxNumberDigits)
		return "", false
	case exp > MaxNumberExponent || exp < -MaxNumberExponent:
		c.limit(line, path, "number %s has an exponent beyond ±%d", clip(s), MaxNumberExponent)
		return "", false
	}
	return num, true
}

// canonNumber rewrites a YAML decimal number (optional sign, digits with
// optional '_' separators, fraction, exponent: what YAML resolves as a
// number) in JSON syntax without changing its value: "+1.50" is "1.50",
// ".5" is "0.5", "5." is "5", "007" is "7". It returns the digit count and
// the exponent (clamped to ±(MaxNumberExponent+1)).
func canonNumber(s string) (num json.Number, digits int, exp int, ok bool) {
	i := 0
	sign := ""
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		if s[i] == '-' {
			sign = "-"
		}
		i++
	}
	scan := func() (string, int) { // digits and '_' from i
		start, n := i, 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '_' && i > 0) {
			if s[i] != '_' {
				n++
			}
			i++
		}
		return strings.ReplaceAll(s[start:i], "_", ""), n
	}
	intPart, nInt := scan()
	frac, nFrac := "", 0
	if i < len(s) && s[i] == '.' {
		i++
		frac, nFrac = scan()
	}
	if nInt == 0 && nFrac == 0 {
		return "", 0, 0, false
	}
	expText := ""
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		start := i
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || s[i] < '0' || s[i] > '9' {
			return "", 0, 0, false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		expText = s[start:i]
		mag := strings.TrimLeft(strings.TrimLeft(expText, "+-"), "0")
		if len(mag) > 6 {
			exp = MaxNumberExponent + 1
		} else if mag != "" {
			exp, _ = strconv.Atoi(mag)
		}
		if expText[0] == '-' {
			exp = -exp
		}
	}
	if i != len(s) {
		return "", 0, 0, false
	}
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	out := sign + intPart
	if frac != "" {
		out += "." + frac
	}
	if expText != "" {
		out += "e" + expText
	}
	return json.Number(out), len(intPart) + len(frac), exp, true
}

// spend charges n bytes of expanded template text (see MaxExpandedBytes);
// it reports the first overrun (at line, field and step) and returns false
// from then on.
func (p *parser) spend(line int, field, step string, n int) bool {
	if p.overBudget {
		return false
	}
	p.expanded += n
	if p.expanded <= MaxExpandedBytes {
		return true
	}
	p.overBudget = true
	p.limitf(line, field, step, "the template expands to more than %d bytes once YAML aliases and merge keys are followed (every use of an alias counts)", MaxExpandedBytes)
	return false
}

// plainDecimal reports whether s is an integer YAML reads in base 10:
// optional sign, then digits (with optional '_') not starting with 0
// ("017" is octal to YAML), or a lone 0.
func plainDecimal(s string) bool {
	s = strings.TrimLeft(s, "+-")
	if s == "" || (s[0] == '0' && s != "0") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '_' {
			return false
		}
	}
	return true
}
