package analyzer

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// jsonFloat is a float64 that JSON can always hold: NaN, +Inf and -Inf, which
// encoding/json refuses ("json: unsupported value: NaN"), are written as the strings
// "NaN", "+Inf" and "-Inf" (Prometheus's own spelling); finite values stay numbers.
// Decoding accepts both forms. A provider can return any of them (0/0 at zero traffic
// is NaN), and none may stop the state from being saved.
type jsonFloat float64

// MarshalJSON writes a number, or "NaN", "+Inf", "-Inf".
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// UnmarshalJSON reads a number or one of the strings MarshalJSON writes.
func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := parseNonFinite(s)
		if err != nil {
			return err
		}
		*f = jsonFloat(v)
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = jsonFloat(v)
	return nil
}

func parseNonFinite(s string) (float64, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	return 0, fmt.Errorf("%q is not a number (want a number, \"NaN\", \"+Inf\" or \"-Inf\")", s)
}

// measurementJSON is Measurement's wire form: its floats as jsonFloat.
type measurementJSON struct {
	Phase      MeasurementPhase     `json:"phase"`
	Value      string               `json:"value"`
	Values     []jsonFloat          `json:"values,omitempty"`
	Details    map[string]jsonFloat `json:"details,omitempty"`
	Message    string               `json:"message"`
	StartedAt  time.Time            `json:"startedAt"`
	FinishedAt time.Time            `json:"finishedAt"`
}

// MarshalJSON encodes m with non-finite values as strings (see jsonFloat).
func (m Measurement) MarshalJSON() ([]byte, error) {
	w := measurementJSON{Phase: m.Phase, Value: m.Value, Message: m.Message,
		StartedAt: m.StartedAt, FinishedAt: m.FinishedAt}
	if len(m.Values) > 0 {
		w.Values = make([]jsonFloat, len(m.Values))
		for i, v := range m.Values {
			w.Values[i] = jsonFloat(v)
		}
	}
	if len(m.Details) > 0 {
		w.Details = make(map[string]jsonFloat, len(m.Details))
		for k, v := range m.Details {
			w.Details[k] = jsonFloat(v)
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes what MarshalJSON writes (and plain numbers).
func (m *Measurement) UnmarshalJSON(b []byte) error {
	var w measurementJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = Measurement{Phase: w.Phase, Value: w.Value, Message: w.Message,
		StartedAt: w.StartedAt, FinishedAt: w.FinishedAt}
	if len(w.Values) > 0 {
		m.Values = make([]float64, len(w.Values))
		for i, v := range w.Values {
			m.Values[i] = float64(v)
		}
	}
	if len(w.Details) > 0 {
		m.Details = make(map[string]float64, len(w.Details))
		for k, v := range w.Details {
			m.Details[k] = float64(v)
		}
	}
	return nil
}
