package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-mesh/sluice/model"
)

// Web fetches p.URL (GET, or POST/PUT with p.Body) with p.Headers and p.Timeout and
// returns the result as Argo's web provider does (metricproviders/webmetric
// parseResponse): a body that is JSON gives the value at p.JSONPath (the whole document
// when empty) — a float64, string, bool, nil, []any or map[string]any — and text is that
// value as JSON; a body that is not JSON is the result itself, as a string, and text is
// the body. A non-2xx status is an error.
func Web(ctx context.Context, client *http.Client, p *model.WebProvider) (result any, text string, err error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	method := strings.ToUpper(p.Method)
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if p.Body != "" {
		body = strings.NewReader(p.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.URL, body)
	if err != nil {
		return nil, "", err
	}
	for k, v := range p.Headers {
		req.Header.Set(k, v)
	}
	if p.Body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode/100 != 2 {
		return nil, "", fmt.Errorf("web provider: %s returned %s", p.URL, resp.Status)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return string(b), string(b), nil // Argo: a body that is not JSON is evaluated as a string
	}
	v, err := JSONPath(doc, p.JSONPath)
	if err != nil {
		return nil, "", err
	}
	t, _ := json.Marshal(v)
	return v, string(t), nil
}

// JSONPath evaluates a small JSONPath subset as Argo's web provider uses it:
// "{$.data.ok}", "$.a.b[0].c", "$.items[*].v", "$['key']". Braces are optional; "" or
// "$" returns doc. A path with several matches ([*]) yields the first (map keys in
// sorted order), as Argo's web provider does.
func JSONPath(doc any, path string) (any, error) {
	p := strings.TrimSpace(path)
	p = strings.TrimSuffix(strings.TrimPrefix(p, "{"), "}")
	p = strings.TrimPrefix(strings.TrimSpace(p), "$")
	cur := []any{doc}
	multi := false
	for p != "" {
		var key string
		idx := -2 // -2: key, -1: wildcard, >= 0: index
		switch {
		case strings.HasPrefix(p, "."):
			p = p[1:]
			n := strings.IndexAny(p, ".[")
			if n < 0 {
				n = len(p)
			}
			key, p = p[:n], p[n:]
			if key == "*" {
				idx = -1
			}
		case strings.HasPrefix(p, "["):
			end := strings.Index(p, "]")
			if end < 0 {
				return nil, fmt.Errorf("jsonPath %q: missing ]", path)
			}
			in := strings.TrimSpace(p[1:end])
			p = p[end+1:]
			switch {
			case in == "*":
				idx = -1
			case strings.HasPrefix(in, "'") || strings.HasPrefix(in, `"`):
				key = strings.Trim(in, `'"`)
			default:
				i, err := strconv.Atoi(in)
				if err != nil {
					return nil, fmt.Errorf("jsonPath %q: bad index %q", path, in)
				}
				idx = i
			}
		default:
			return nil, fmt.Errorf("jsonPath %q: unexpected %q", path, p)
		}
		var next []any
		for _, c := range cur {
			switch {
			case idx == -1:
				multi = true
				switch c := c.(type) {
				case []any:
					next = append(next, c...)
				case map[string]any:
					keys := make([]string, 0, len(c))
					for k := range c {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					for _, k := range keys {
						next = append(next, c[k])
					}
				}
			case idx >= 0:
				if a, ok := c.([]any); ok && idx < len(a) {
					next = append(next, a[idx])
				} else if !multi {
					return nil, fmt.Errorf("jsonPath %q: index %d not found", path, idx)
				}
			default:
				if m, ok := c.(map[string]any); ok {
					if v, ok := m[key]; ok {
						next = append(next, v)
						continue
					}
				}
				if !multi {
					return nil, fmt.Errorf("jsonPath %q: key %q not found", path, key)
				}
			}
		}
		cur = next
	}
	if len(cur) == 0 {
		return nil, fmt.Errorf("jsonPath %q: result of web metric produced no value", path)
	}
	return cur[0], nil // several matches: the first, as Argo's getValue takes it
}

// IsNoData reports whether a provider result is no data: nil, an empty list, or a
// number (or list of numbers) that is all NaN.
func IsNoData(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case float64:
		return math.IsNaN(x)
	case []float64:
		for _, f := range x {
			if !math.IsNaN(f) {
				return false
			}
		}
		return true
	case []any:
		return len(x) == 0
	}
	return false
}
