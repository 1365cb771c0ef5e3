package provider

import (
	"context"
	"encoding/base64"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	pmodel "github.com/prometheus/common/model"

	"github.com/sluice-mesh/sluice/model"
)

func TestJSONPath(t *testing.T) {
	doc := map[string]any{
		"data": map[string]any{"ok": true, "rate": 0.02, "items": []any{
			map[string]any{"v": 1.0}, map[string]any{"v": 2.0}}},
		"a-b": "x",
	}
	cases := []struct {
		path string
		want any
	}{
		{"{$.data.ok}", true},
		{"$.data.rate", 0.02},
		{"{$.data.items[1].v}", 2.0},
		{"$.data.items[*].v", 1.0}, // several matches: the first, as Argo
		{"$.data.items[*]", map[string]any{"v": 1.0}},
		{"$['a-b']", "x"},
		{"", doc},
	}
	for _, c := range cases {
		got, err := JSONPath(doc, c.path)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: %s", c.path, diff)
		}
	}
	for _, bad := range []string{"$.nope", "$.data.items[5]", "$.data[x"} {
		if _, err := JSONPath(doc, bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestWebProvider(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Key") != "k" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			w.Write([]byte(`{"data":{"rate":0.5}}`))
			return
		}
		if r.URL.Path == "/plain" {
			w.Write([]byte("OK"))
			return
		}
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		w.Write([]byte(`{"data":{"rate":0.01}}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	p := &model.WebProvider{URL: srv.URL, Headers: map[string]string{"X-Key": "k"}, JSONPath: "{$.data.rate}"}
	if v, text, err := Web(ctx, nil, p); err != nil || v != 0.01 || text != "0.01" {
		t.Fatalf("GET: %v %q %v", v, text, err)
	}
	p.Method, p.Body = "POST", `{}`
	if v, _, err := Web(ctx, nil, p); err != nil || v != 0.5 {
		t.Fatalf("POST: %v %v", v, err)
	}
	if _, _, err := Web(ctx, nil, &model.WebProvider{URL: srv.URL}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("status not an error: %v", err)
	}
	// A body that is not JSON is the result, as a string (Argo's parseResponse).
	if v, text, err := Web(ctx, nil, &model.WebProvider{URL: srv.URL + "/plain", Headers: map[string]string{"X-Key": "k"}}); err != nil || v != "OK" || text != "OK" {
		t.Fatalf("plain body: %#v %q %v", v, text, err)
	}
	start := time.Now()
	_, _, err := Web(ctx, nil, &model.WebProvider{URL: srv.URL + "/slow", Headers: map[string]string{"X-Key": "k"}, Timeout: 100 * time.Millisecond})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("timeout not honoured: %v", err)
	}
}

func TestResultShapes(t *testing.T) {
	vec := pmodel.Vector{{Value: 0.25}, {Value: 1}}
	r, vals, text, noData, err := Result(vec)
	if err != nil || noData || text != "[0.25,1]" || !cmp.Equal(r, []float64{0.25, 1}) || len(vals) != 2 {
		t.Fatalf("vector: %v %v %q %v %v", r, vals, text, noData, err)
	}
	r, _, text, noData, _ = Result(&pmodel.Scalar{Value: 3})
	if r != 3.0 || text != "3" || noData {
		t.Fatalf("scalar: %v %q", r, text)
	}
	if _, _, _, noData, _ = Result(pmodel.Vector{}); !noData {
		t.Fatal("empty vector must be no data")
	}
	if _, _, _, noData, _ = Result(pmodel.Vector{{Value: pmodel.SampleValue(math.NaN())}}); !noData {
		t.Fatal("NaN must be no data")
	}
	if _, _, _, _, err = Result(pmodel.Matrix{}); err == nil {
		t.Fatal("matrix must be an error")
	}
}

func TestRemoteAuthNeverLeaks(t *testing.T) {
	var gotAuth, gotTenant string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		gotTenant = r.Header.Get("X-Scope-OrgID")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]}]}}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("s3cret-token\n"), 0o600)
	r, err := NewRemote(&model.PrometheusProvider{Address: srv.URL, BearerTokenFile: tok, Headers: map[string]string{"X-Scope-OrgID": "t1"}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.Query(context.Background(), "up", time.Now())
	if err != nil || gotAuth != "Bearer s3cret-token" || gotTenant != "t1" {
		t.Fatalf("%v %v %q", v, err, gotAuth)
	}
	t.Setenv("SLUICE_TEST_PW", "pw")
	r, _ = NewRemote(&model.PrometheusProvider{Address: srv.URL, BasicAuthUser: "u", BasicAuthPasswordEnv: "SLUICE_TEST_PW"})
	if _, err := r.Query(context.Background(), "up", time.Now()); err != nil {
		t.Fatal(err)
	}
	if gotAuth != "Basic "+base64.StdEncoding.EncodeToString([]byte("u:pw")) {
		t.Fatalf("basic auth %q", gotAuth)
	}
	// A missing secret is an error that names the variable, never a value.
	r, _ = NewRemote(&model.PrometheusProvider{Address: srv.URL, BearerTokenEnv: "SLUICE_TEST_UNSET"})
	if _, err := r.Query(context.Background(), "up", time.Now()); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("%v", err)
	}
}
