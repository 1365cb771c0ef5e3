package condition

import (
	"math"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		src, want string
	}{
		{"", "empty condition"},
		{"result[0] <=", "unexpected token EOF"},
		{"result[0] <= 0.01 &&", "unexpected token EOF"},
		{"result + 1", ""}, // unknown type: accepted at compile time, fails at run time
		{`"text"`, "expected bool, but got string"},
		{"1 + 2", "expected bool, but got int"},
		{"nosuchfunc(result)", "unknown name nosuchfunc"},
		{strings.Repeat("(", 5000), "limit is 4096"},
	} {
		_, err := Compile(tc.src)
		if tc.want == "" {
			if err != nil {
				t.Errorf("Compile(%q): %v, want no error", tc.src, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%.40q) error = %v, want it to contain %q", tc.src, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("Compile(%.40q) error has several lines: %q", tc.src, err)
		}
	}
}

func TestEval(t *testing.T) {
	for _, tc := range []struct {
		src     string
		result  any
		want    bool
		wantErr string
	}{
		{"result[0] <= 0.01", []float64{0.005}, true, ""},
		{"result[0] <= 0.01", []float64{0.02}, false, ""},
		{"result <= 0.5", 0.4, true, ""},
		{"result <= 0.5", 3, false, ""}, // int result against float literal
		{"len(result) == 0 || result[0] >= 0.95", []float64{}, true, ""},
		{"len(result) == 0 || result[0] >= 0.95", []float64{0.9}, false, ""},
		{"len(result) == 0 || result[0] >= 0.95", []float64{0.99}, true, ""},
		{"result[0] <= 0.01", []float64{}, false, "metric result is empty"},
		{"result[0] <= 0.01", nil, false, "metric result is empty"},
		{"isNaN(result) || result < 1", math.NaN(), true, ""},
		{"!isNaN(result) && result < 1", math.NaN(), false, ""},
		{"isInf(result)", math.Inf(1), true, ""},
		{"isNaN(result[0])", []float64{math.NaN()}, true, ""},
		{"default(result, 0) <= 0.1", nil, true, ""},
		{"default(result, 0) <= 0.1", 0.5, false, ""},
		{"isNil(result)", nil, true, ""},
		{"isNil(result)", 1.0, false, ""},
		{"asInt(result) == 3", "3", true, ""},
		{"asFloat(result) > 2.5", "2.75", true, ""},
		{"asInt(result) == 3", "three", false, "invalid syntax"},
		{"result.ok == true", map[string]any{"ok": true}, true, ""},
		{"result == 'ok'", ptr("ok"), true, ""},     // pointers are dereferenced
		{"result + 1", 1.0, false, "bool(float64)"}, // not a bool
		{"all(result, # < 1)", []float64{0.5, 0.7}, true, ""},
		{"any(result, # > 1)", []float64{0.5, 0.7}, false, ""},
	} {
		c, err := Compile(tc.src)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tc.src, err)
		}
		got, err := c.Eval(tc.result)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Eval(%q, %v) error = %v, want it to contain %q", tc.src, tc.result, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Eval(%q, %v): %v", tc.src, tc.result, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Eval(%q, %v) = %v, want %v", tc.src, tc.result, got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestEvaluate(t *testing.T) {
	low := MustCompile("result[0] <= 0.01")
	high := MustCompile("result[0] > 0.05")
	for _, tc := range []struct {
		name             string
		success, failure *Condition
		result           any
		want             Phase
	}{
		{"none set", nil, nil, []float64{1}, Successful},
		{"success only, holds", low, nil, []float64{0.001}, Successful},
		{"success only, fails", low, nil, []float64{0.02}, Failed},
		{"failure only, holds", nil, high, []float64{0.1}, Failed},
		{"failure only, does not hold", nil, high, []float64{0.02}, Successful},
		{"both, success", low, high, []float64{0.001}, Successful},
		{"both, failure", low, high, []float64{0.1}, Failed},
		{"both, neither", low, high, []float64{0.02}, Inconclusive},
		{"error on empty", low, high, []float64{}, Error},
		{"error in failure", nil, high, nil, Error},
	} {
		got, err := Evaluate(tc.success, tc.failure, tc.result)
		if got != tc.want {
			t.Errorf("%s: Evaluate = %s (%v), want %s", tc.name, got, err, tc.want)
		}
		if (got == Error) != (err != nil) {
			t.Errorf("%s: phase %s with error %v", tc.name, got, err)
		}
	}
	_, err := Evaluate(nil, high, nil)
	if err == nil || !strings.Contains(err.Error(), "failureCondition") {
		t.Errorf("error %v does not name failureCondition", err)
	}
}

func TestUsesNoDataGuard(t *testing.T) {
	for src, want := range map[string]bool{
		"result[0] <= 0.01":                     false,
		"len(result) == 0 || result[0] >= 0.95": true,
		"isNaN(result) || result < 1":           true,
		"default(result, 0) < 1":                true,
		"isNil(result) || result < 1":           true,
		"result.len > 0":                        false, // a field named len is no guard
		"'len(' == result":                      false, // nor is a string
		"result[0] <=":                          false, // does not parse
	} {
		if got := UsesNoDataGuard(src); got != want {
			t.Errorf("UsesNoDataGuard(%q) = %v, want %v", src, got, want)
		}
	}
	if !MustCompile("len(result) > 0 && result[0] < 1").HandlesNoData() {
		t.Error("HandlesNoData false for a len() guard")
	}
	if MustCompile("result[0] < 1").HandlesNoData() {
		t.Error("HandlesNoData true without a guard")
	}
}

func TestConcurrentEval(t *testing.T) {
	c := MustCompile("default(result, 0) <= 0.5")
	done := make(chan bool)
	for i := 0; i < 4; i++ {
		go func(i int) {
			var r any
			if i%2 == 0 {
				r = 0.9
			}
			ok, err := c.Eval(r)
			done <- err == nil && ok == (i%2 != 0)
		}(i)
	}
	for i := 0; i < 4; i++ {
		if !<-done {
			t.Error("concurrent Eval gave a wrong answer")
		}
	}
}
