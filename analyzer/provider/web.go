package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/sluice-mesh/sluice/model"
)

// Web fetches p.URL (GET, or POST with p.Body) with p.Headers and p.Timeout and returns
// the value at p.JSONPath (the whole document when empty): a float64, string, bool,
// []any or map[string]any as decoded from JSON. A non-2xx status is an error.
func Web(ctx context.Context, client *http.Client, p *model.WebProvider) (any, error) {
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
		return nil, err
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
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("web provider: %s returned %s", p.URL, resp.Status)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("web provider: response is not JSON: %w", err)
	}
	return JSONPath(doc, p.JSONPath)
}

// JSONPath evaluates a small JSONPath subset as Argo's web provider uses it:
// "{$.data.ok}", "$.a.b[0].c", "$.items[*].v" ([*] collects into a list), "$['key']".
// Braces are optional; "" or "$" returns doc.
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
					for _, v := range c {
						next = append(next, v)
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
	if multi {
		return cur, nil
	}
	return cur[0], nil
}
