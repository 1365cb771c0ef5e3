package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-mesh/sluice/model"
)

// controlPlaneDoc is a ControlPlane whose spec ends with the given lines (indented by
// two spaces inside spec), starting at line 5 of cp.yaml.
func controlPlaneDoc(spec string) string {
	return "apiVersion: sluice.dev/v1alpha1\nkind: ControlPlane\nmetadata: {name: main}\nspec:\n" + spec
}

func TestEtcdStore(t *testing.T) {
	cfg, ds := LoadBytes("cp.yaml", []byte(controlPlaneDoc(`  store:
    etcd:
      endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "etcd-2.etcd:2379"]
      prefix: /prod/sluice
      leaseTTL: 3s
`)))
	if len(ds) != 0 {
		t.Fatalf("diagnostics:\n%s", ds)
	}
	want := &model.EtcdStore{
		Endpoints: []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379", "etcd-2.etcd:2379"},
		Prefix:    "/prod/sluice/", // the trailing slash keeps /prod/sluice-other/ out
		LeaseTTL:  3 * time.Second,
		Pos:       model.Pos{File: "cp.yaml", Line: 6},
	}
	if d := cmp.Diff(want, cfg.ControlPlane.Etcd); d != "" {
		t.Errorf("etcd store (-want +got):\n%s", d)
	}

	cfg, ds = LoadBytes("cp.yaml", []byte(controlPlaneDoc(`  store:
    etcd:
      endpoints: ["https://etcd.example:2379"]
      tls: {ca: /etc/sluice/etcd-ca.pem, cert: /etc/sluice/etcd.pem, key: /etc/sluice/etcd-key.pem}
`)))
	if len(ds) != 0 {
		t.Fatalf("diagnostics:\n%s", ds)
	}
	want = &model.EtcdStore{
		Endpoints: []string{"https://etcd.example:2379"}, Prefix: "/sluice/", LeaseTTL: 5 * time.Second,
		TLS: &model.EtcdTLS{CA: "/etc/sluice/etcd-ca.pem", Cert: "/etc/sluice/etcd.pem", Key: "/etc/sluice/etcd-key.pem"},
		Pos: model.Pos{File: "cp.yaml", Line: 6},
	}
	if d := cmp.Diff(want, cfg.ControlPlane.Etcd); d != "" {
		t.Errorf("etcd store with TLS (-want +got):\n%s", d)
	}

	cfg, ds = LoadBytes("cp.yaml", []byte(controlPlaneDoc("  stateDir: /var/lib/sluice\n")))
	if len(ds) != 0 || cfg.ControlPlane.Etcd != nil {
		t.Fatalf("without store nothing changes: %v %+v", ds, cfg.ControlPlane.Etcd)
	}
}

func TestEtcdStoreProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec string
		want []string
	}{
		{"empty store", "  store: {}\n", []string{
			`cp.yaml:5: spec.store.etcd is required: Sluice keeps shared state in etcd: etcd: {endpoints: ["http://127.0.0.1:2379"]}; without store, state stays in stateDir`}},
		{"no endpoints", "  store:\n    etcd: {prefix: /s/}\n", []string{
			`cp.yaml:6: spec.store.etcd.endpoints is required: list etcd's client URLs, e.g. endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]`}},
		{"empty endpoints", "  store:\n    etcd:\n      endpoints: []\n", []string{
			`cp.yaml:7: spec.store.etcd.endpoints: list at least one etcd client URL`}},
		{"endpoints not a list", "  store:\n    etcd:\n      endpoints: http://127.0.0.1:2379\n", []string{
			`cp.yaml:7: spec.store.etcd.endpoints: want a list, got the string "http://127.0.0.1:2379"`}},
		{"bad endpoints", "  store:\n    etcd:\n      endpoints:\n        - unix:///run/etcd.sock\n        - http://10.0.0.1\n        - http://10.0.0.1:2379/v3\n        - 10.0.0.1:99999\n        - 2379\n", []string{
			`cp.yaml:8: spec.store.etcd.endpoints[0]: "unix:///run/etcd.sock" must start with http:// or https://`,
			`cp.yaml:9: spec.store.etcd.endpoints[1]: "http://10.0.0.1" is not http://HOST:PORT; write e.g. http://10.0.0.1:2379 (etcd's client port is usually 2379)`,
			`cp.yaml:10: spec.store.etcd.endpoints[2]: "http://10.0.0.1:2379/v3" must be scheme://HOST:PORT and nothing more; write e.g. http://10.0.0.1:2379`,
			`cp.yaml:11: spec.store.etcd.endpoints[3]: "10.0.0.1:99999" is not http://HOST:PORT; write e.g. http://10.0.0.1:2379 (etcd's client port is usually 2379)`,
			`cp.yaml:12: spec.store.etcd.endpoints[4]: want a string, got 2379; quote it: "2379"`}},
		{"duplicate endpoint", "  store:\n    etcd:\n      endpoints: [\"http://a:2379\", \"http://a:2379\"]\n", []string{
			`cp.yaml:7: spec.store.etcd.endpoints[1]: "http://a:2379" is listed twice; list each etcd member once`}},
		{"mixed schemes", "  store:\n    etcd:\n      endpoints: [\"http://a:2379\", \"https://b:2379\"]\n", []string{
			`cp.yaml:7: spec.store.etcd.endpoints: mixes http:// and https:// endpoints; etcd clients use one scheme for every member`}},
		{"relative prefix", "  store:\n    etcd:\n      endpoints: [\"http://a:2379\"]\n      prefix: sluice/\n", []string{
			`cp.yaml:8: spec.store.etcd.prefix: "sluice/" must start with /, e.g. /sluice/`}},
		{"lease below 1s", "  store:\n    etcd:\n      endpoints: [\"http://a:2379\"]\n      leaseTTL: 500ms\n", []string{
			`cp.yaml:8: spec.store.etcd.leaseTTL: 500ms is below 1s, the shortest lease etcd grants`}},
		{"lease not whole seconds", "  store:\n    etcd:\n      endpoints: [\"http://a:2379\"]\n      leaseTTL: 2500ms\n", []string{
			`cp.yaml:8: spec.store.etcd.leaseTTL: 2.5s is not whole seconds; etcd leases count seconds, write e.g. 3s`}},
		{"lease zero", "  store:\n    etcd:\n      endpoints: [\"http://a:2379\"]\n      leaseTTL: 0\n", []string{
			`cp.yaml:8: spec.store.etcd.leaseTTL: 0s is below 1s, the shortest lease etcd grants`}},
		{"cert without key", "  store:\n    etcd:\n      endpoints: [\"https://a:2379\"]\n      tls: {cert: c.pem}\n", []string{
			`cp.yaml:8: spec.store.etcd.tls: cert is set but key is not; a client certificate needs both`}},
		{"empty tls", "  store:\n    etcd:\n      endpoints: [\"https://a:2379\"]\n      tls: {}\n", []string{
			`cp.yaml:8: spec.store.etcd.tls: set ca, and cert with key for mTLS`}},
		{"tls over http", "  store:\n    etcd:\n      endpoints: [\"a:2379\"]\n      tls: {ca: ca.pem}\n", []string{
			`cp.yaml:8: spec.store.etcd.tls: TLS is set but the endpoints are plain http://; write https:// endpoints`}},
		{"typo", "  store:\n    etcd:\n      endpoint: [\"http://a:2379\"]\n", []string{
			`cp.yaml:6: spec.store.etcd.endpoints is required: list etcd's client URLs, e.g. endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]`,
			`cp.yaml:7: spec.store.etcd: unknown field "endpoint"; did you mean "endpoints"?`}},
		{"other store", "  store:\n    consul: {address: a:8500}\n", []string{
			`cp.yaml:5: spec.store.etcd is required: Sluice keeps shared state in etcd: etcd: {endpoints: ["http://127.0.0.1:2379"]}; without store, state stays in stateDir`,
			`cp.yaml:6: spec.store: unknown field "consul"; known fields: etcd`}},
		{"stateDir unused", "  stateDir: /var/lib/sluice\n  store:\n    etcd: {endpoints: [\"http://a:2379\"]}\n", []string{
			`cp.yaml:5: warning: spec.stateDir is ignored: with store.etcd, rollout state lives in etcd`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ds := LoadBytes("cp.yaml", []byte(controlPlaneDoc(tc.spec)))
			var got []string
			for _, d := range ds {
				got = append(got, d.String())
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("diagnostics (-want +got):\n%s\nconfig:\n%s", d, strings.TrimSpace(tc.spec))
			}
		})
	}
}
