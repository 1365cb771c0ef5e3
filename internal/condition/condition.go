// Package condition compiles and evaluates AnalysisTemplate successCondition and
// failureCondition expressions exactly as Argo Rollouts does (utils/evaluate): the
// github.com/expr-lang/expr language over `result`, with the helpers isNaN, isInf, isNil,
// default, asInt and asFloat, and expr's builtins such as len.
//
// Conditions are compiled once, when the config loads, so a condition that does not
// compile is a config error; Eval then runs the compiled program against each
// measurement's result. Evaluate combines a success and a failure condition into a
// measurement phase with Argo's EvaluateResult rules.
package condition

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Phase is a measurement outcome. Its values equal analyzer.MeasurementPhase's.
type Phase string

// Measurement outcomes (Argo's names).
const (
	Successful   Phase = "Successful"
	Failed       Phase = "Failed"
	Inconclusive Phase = "Inconclusive"
	Error        Phase = "Error"
)

// MaxLength bounds the length of an expression, so that a hostile config cannot make
// compilation expensive.
const MaxLength = 4096

// Condition is a compiled condition. It is safe for concurrent use.
type Condition struct {
	src     string
	program *vm.Program
	guard   bool
}

// env is what a condition sees. `result` is an interface, so a condition is
// type-checked at load time only as far as it can be without a value; the helpers are
// bound to the measurement's result per evaluation, as Argo builds its env each time.
type env struct {
	Result  any                `expr:"result"`
	AsInt   func(any) int64    `expr:"asInt"`
	AsFloat func(any) float64  `expr:"asFloat"`
	IsNaN   func(float64) bool `expr:"isNaN"`
	IsInf   func(float64) bool `expr:"isInf"`
	IsNil   func(any) bool     `expr:"isNil"`
	Default func(any, any) any `expr:"default"`
}

// newEnv is the environment for one evaluation of result.
func newEnv(result any) env {
	return env{
		Result:  valueFromPointer(result),
		AsInt:   asInt,
		AsFloat: asFloat,
		IsNaN:   math.IsNaN,
		IsInf:   isInf,
		IsNil:   isNilFunc(result),
		Default: defaultFunc(result),
	}
}

// Compile parses and type-checks src. The error is a one-line message (expr's
// multi-line source excerpt is removed), suitable for a FILE:LINE diagnostic.
func Compile(src string) (*Condition, error) {
	if src == "" {
		return nil, errors.New("empty condition")
	}
	if len(src) > MaxLength {
		return nil, fmt.Errorf("condition is %d bytes long; the limit is %d", len(src), MaxLength)
	}
	var prog *vm.Program
	err := safely(func() error {
		var err error
		prog, err = expr.Compile(src, expr.Env(env{}), expr.AsBool())
		return err
	})
	if err != nil {
		return nil, unwrap(err)
	}
	return &Condition{src: src, program: prog, guard: UsesNoDataGuard(src)}, nil
}

// MustCompile is Compile that panics on error, for tests and constants.
func MustCompile(src string) *Condition {
	c, err := Compile(src)
	if err != nil {
		panic("condition: " + err.Error())
	}
	return c
}

// String returns the source of the condition.
func (c *Condition) String() string {
	if c == nil {
		return ""
	}
	return c.src
}

// HandlesNoData reports whether the condition itself deals with missing data (it calls
// len, isNaN, isNil or default). See UsesNoDataGuard.
func (c *Condition) HandlesNoData() bool { return c != nil && c.guard }

// Eval runs the condition against result (a float64, a []float64, a map or whatever the
// provider returns; pointers are dereferenced as Argo does). A runtime error, or a
// non-bool outcome, is an error. Indexing into an empty or nil result fails with a
// message that says so and how to guard the condition.
func (c *Condition) Eval(result any) (bool, error) {
	var out any
	err := safely(func() error {
		var err error
		out, err = expr.Run(c.program, newEnv(result))
		return err
	})
	if err != nil {
		if isNilOrEmpty(result) {
			return false, fmt.Errorf("metric result is empty or unavailable (no data), and %q cannot be evaluated on it; guard it with len(result) > 0 or isNaN()", c.src)
		}
		return false, unwrap(err)
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("expected bool, but got %T", out)
	}
	return b, nil
}

// Evaluate combines a success and a failure condition (nil: not set) into a measurement
// phase, with Argo's EvaluateResult rules:
//   - neither set: Successful (unless evaluation fails);
//   - success only: Successful when it holds, else Failed;
//   - failure only: Failed when it holds, else Successful;
//   - both: Failed when failure holds, Successful when success holds, else Inconclusive.
//
// An evaluation error gives Error and the error, naming which condition failed.
func Evaluate(success, failure *Condition, result any) (Phase, error) {
	var ok, bad bool
	var err error
	if success != nil {
		if ok, err = success.Eval(result); err != nil {
			return Error, fmt.Errorf("could not evaluate successCondition %q: %w", success.src, err)
		}
	}
	if failure != nil {
		if bad, err = failure.Eval(result); err != nil {
			return Error, fmt.Errorf("could not evaluate failureCondition %q: %w", failure.src, err)
		}
	}
	switch {
	case success == nil && failure == nil:
		return Successful, nil
	case failure == nil:
		bad = !ok
	case success == nil:
		ok = !bad
	}
	if bad {
		return Failed, nil
	}
	if !ok {
		return Inconclusive, nil
	}
	return Successful, nil
}

// guardFuncs are the calls that show a condition handles a missing or NaN result.
var guardFuncs = map[string]bool{"len": true, "isNaN": true, "isNil": true, "default": true}

// UsesNoDataGuard reports whether the expression itself handles missing data: it calls
// len(, isNaN(, isNil( or default(. The analyzer turns an empty or NaN result into an
// Inconclusive measurement unless the condition handles it. An expression that does not
// parse has no guard.
func UsesNoDataGuard(src string) bool {
	if len(src) > MaxLength {
		return false
	}
	var tree *parser.Tree
	if safely(func() error {
		var err error
		tree, err = parser.Parse(src)
		return err
	}) != nil {
		return false
	}
	v := &guardVisitor{}
	ast.Walk(&tree.Node, v)
	return v.found
}

type guardVisitor struct{ found bool }

func (v *guardVisitor) Visit(n *ast.Node) {
	switch n := (*n).(type) {
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && guardFuncs[id.Value] {
			v.found = true
		}
	case *ast.BuiltinNode:
		if guardFuncs[n.Name] {
			v.found = true
		}
	}
}

// safely runs f, turning a panic (expr recovers most, a helper such as asInt panics on
// purpose) into an error.
func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("evaluation panicked: %v", r)
		}
	}()
	return f()
}

// unwrap removes expr's multi-line formatting from an error.
func unwrap(err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		return errors.New(fe.Message)
	}
	return err
}

func isInf(f float64) bool { return math.IsInf(f, 0) }

func defaultFunc(result any) func(any, any) any {
	return func(_ any, def any) any {
		if isNil(result) {
			return def
		}
		return valueFromPointer(result)
	}
}

func isNilFunc(result any) func(any) bool {
	return func(any) bool { return isNil(result) }
}

func isNil(in any) bool {
	if in == nil {
		return true
	}
	switch reflect.TypeOf(in).Kind() {
	case reflect.Ptr, reflect.Map, reflect.Chan, reflect.Slice, reflect.Func, reflect.Interface:
		return reflect.ValueOf(in).IsNil()
	}
	return false
}

func isNilOrEmpty(in any) bool {
	v := valueFromPointer(in)
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.String:
		return rv.Len() == 0
	}
	return false
}

// valueFromPointer dereferences a non-nil pointer; a nil one becomes nil.
func valueFromPointer(in any) any {
	if isNil(in) {
		return nil
	}
	if reflect.TypeOf(in).Kind() != reflect.Ptr {
		return in
	}
	return reflect.ValueOf(in).Elem().Interface()
}

func asInt(in any) int64 {
	switch i := in.(type) {
	case float64:
		return int64(i)
	case float32:
		return int64(i)
	case int64:
		return i
	case int32:
		return int64(i)
	case int16:
		return int64(i)
	case int8:
		return int64(i)
	case int:
		return int64(i)
	case uint64:
		return int64(i)
	case uint32:
		return int64(i)
	case uint16:
		return int64(i)
	case uint8:
		return int64(i)
	case uint:
		return int64(i)
	case string:
		n, err := strconv.ParseInt(i, 10, 64)
		if err == nil {
			return n
		}
		panic(err)
	}
	panic(fmt.Sprintf("asInt() not supported on %T %v", in, in))
}

func asFloat(in any) float64 {
	switch i := in.(type) {
	case float64:
		return i
	case float32:
		return float64(i)
	case int64:
		return float64(i)
	case int32:
		return float64(i)
	case int16:
		return float64(i)
	case int8:
		return float64(i)
	case int:
		return float64(i)
	case uint64:
		return float64(i)
	case uint32:
		return float64(i)
	case uint16:
		return float64(i)
	case uint8:
		return float64(i)
	case uint:
		return float64(i)
	case string:
		f, err := strconv.ParseFloat(i, 64)
		if err == nil {
			return f
		}
		panic(err)
	}
	panic(fmt.Sprintf("asFloat() not supported on %T %v", in, in))
}
