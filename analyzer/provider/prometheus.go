package provider

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	pmodel "github.com/prometheus/common/model"

	"github.com/sluice-mesh/sluice/model"
)

// Querier evaluates an instant PromQL query. The embedded store and Remote implement it.
type Querier interface {
	Query(ctx context.Context, query string, ts time.Time) (pmodel.Value, error)
}

// DefaultTimeout bounds a query when the metric sets none.
const DefaultTimeout = 10 * time.Second

// Remote queries a Prometheus server through client_golang's api/prometheus/v1.
type Remote struct {
	api     v1.API
	timeout time.Duration
}

// NewRemote returns a Querier for the server p.Address, with p's timeout, headers and auth.
// Basic and bearer credentials are read from their file or environment variable on
// every request, so a rotated secret is picked up, and are never logged.
func NewRemote(p *model.PrometheusProvider) (*Remote, error) {
	if p.Address == "" {
		return nil, errors.New("prometheus provider: no address")
	}
	addr := p.Address
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	c, err := api.NewClient(api.Config{Address: addr, RoundTripper: &authTransport{p: *p, next: http.DefaultTransport}})
	if err != nil {
		return nil, fmt.Errorf("prometheus provider: %w", err)
	}
	t := p.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return &Remote{api: v1.NewAPI(c), timeout: t}, nil
}

// Query runs query at ts with the provider's timeout. Warnings are ignored; any failure
// (unreachable server, HTTP error, bad query) is an error, never an empty result.
func (r *Remote) Query(ctx context.Context, query string, ts time.Time) (pmodel.Value, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	v, _, _, err := r.api.Query(ctx, query, ts, v1.WithTimeout(r.timeout))
	if err != nil {
		return nil, fmt.Errorf("prometheus query: %w", err)
	}
	return v, nil
}

type authTransport struct {
	p    model.PrometheusProvider
	next http.RoundTripper
}

func secret(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read credential file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if env != "" {
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("credential environment variable %s is not set", env)
		}
		return v, nil
	}
	return "", nil
}

func (a *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := &a.p
	if len(p.Headers) > 0 {
		req = req.Clone(req.Context())
		for k, v := range p.Headers {
			req.Header.Set(k, v)
		}
	}
	switch {
	case p.BearerTokenFile != "" || p.BearerTokenEnv != "":
		tok, err := secret(p.BearerTokenFile, p.BearerTokenEnv)
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+tok)
	case p.BasicAuthUser != "":
		pw, err := secret(p.BasicAuthPasswordFile, p.BasicAuthPasswordEnv)
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.SetBasicAuth(p.BasicAuthUser, pw)
	}
	return a.next.RoundTrip(req)
}

// Result converts a PromQL value to Argo's result shape: a vector becomes []float64 (in
// the order returned), a scalar float64. Text is the value as Argo shows it ("[0.01]").
// NoData is true for an empty vector or when every value is NaN.
func Result(v pmodel.Value) (result any, values []float64, text string, noData bool, err error) {
	switch v := v.(type) {
	case pmodel.Vector:
		values = make([]float64, len(v))
		for i, s := range v {
			values[i] = float64(s.Value)
		}
		result = values
	case *pmodel.Scalar:
		values = []float64{float64(v.Value)}
		result = float64(v.Value)
	case nil:
		return nil, nil, "", true, nil
	default:
		return nil, nil, "", false, fmt.Errorf("unsupported result type %s (want vector or scalar)", v.Type())
	}
	noData = true
	parts := make([]string, len(values))
	for i, f := range values {
		if !math.IsNaN(f) {
			noData = false
		}
		parts[i] = strconv.FormatFloat(f, 'g', 6, 64)
	}
	if _, scalar := result.(float64); scalar {
		text = parts[0]
	} else {
		text = "[" + strings.Join(parts, ",") + "]"
	}
	return result, values, text, noData, nil
}
