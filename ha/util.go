package ha

import (
	"encoding/json"
	"strconv"
)

// mustJSON marshals values that always marshal (plain structs of strings and numbers).
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("ha: marshal: " + err.Error())
	}
	return string(b)
}

func hex16(n int64) string { return strconv.FormatUint(uint64(n), 16) }
