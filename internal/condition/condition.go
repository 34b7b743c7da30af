// Package condition compiles and evaluates the `when` expressions of
// conditional steps: CEL (github.com/google/cel-go) over the task context
// and the results of the step's parents.
//
// An expression sees two variables:
//
//	context  the task context (a map, as decoded from its JSON)
//	results  a map from each parent step's name to its results
//
// and must produce a bool, for example
//
//	results.check_fraud.score < 0.5 && context.amount > 100
//	has(context.coupon)
//
// Expressions are compiled once, when the template loads; a syntax or type
// error is reported there with the step and field. Evaluation is bounded
// (CostLimit) so that a pathological expression cannot hold a runner.
package condition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
)

// MaxLength bounds an expression's source, in bytes.
const MaxLength = 4096

// CostLimit bounds the work of one evaluation (CEL's cost units, roughly
// one per operation and per element a comprehension visits).
const CostLimit = 100_000

// env is the CEL environment every expression is compiled in; cel.Env is
// safe for concurrent use.
var env = func() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("context", cel.DynType),
		cel.Variable("results", cel.MapType(cel.StringType, cel.DynType)),
	)
	if err != nil {
		panic(fmt.Sprintf("condition: CEL environment: %v", err))
	}
	return e
}()

// Condition is a compiled `when` expression.
type Condition struct {
	src string
	prg cel.Program
}

// Compile parses and type-checks src. The error says what is wrong and
// where in the expression (CEL's own message, with line and column).
func Compile(src string) (*Condition, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}
	if len(src) > MaxLength {
		return nil, fmt.Errorf("expression is %d bytes, more than %d", len(src), MaxLength)
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, errors.New(strings.TrimSpace(iss.Err().Error()))
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("expression must be a boolean, it is %s", t)
	}
	prg, err := env.Program(ast, cel.CostLimit(CostLimit))
	if err != nil {
		return nil, fmt.Errorf("expression: %w", err)
	}
	return &Condition{src: src, prg: prg}, nil
}

// String returns the expression's source.
func (c *Condition) String() string { return c.src }

// Eval evaluates the expression over the task context and the parents'
// results (JSON documents; nil or empty is null). An expression that fails
// (a missing key, a type mismatch, the cost limit) or does not produce a
// bool returns an error naming the expression.
func (c *Condition) Eval(taskContext json.RawMessage, results map[string]json.RawMessage) (bool, error) {
	ctxVal, err := decode(taskContext)
	if err != nil {
		return false, fmt.Errorf("when %q: task context: %w", c.src, err)
	}
	res := make(map[string]any, len(results))
	for name, raw := range results {
		v, err := decode(raw)
		if err != nil {
			return false, fmt.Errorf("when %q: results of %s: %w", c.src, name, err)
		}
		res[name] = v
	}
	out, _, err := c.prg.Eval(map[string]any{"context": ctxVal, "results": res})
	if err != nil {
		return false, fmt.Errorf("when %q: %w", c.src, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("when %q: produced %v (%s), not a boolean", c.src, out.Value(), out.Type().TypeName())
	}
	return b, nil
}

// decode turns a JSON document into CEL-friendly Go values: numbers stay
// exact when they are integers (int64), float64 otherwise.
func decode(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

// numbers replaces json.Number by int64 (when it is one) or float64.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}
