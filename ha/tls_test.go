package ha

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// TestMutualTLS runs a replica against an etcd that requires client certificates: with
// the configured CA and client pair it leads and writes; without the client
// certificate, or trusting another CA, it never reaches etcd.
func TestMutualTLS(t *testing.T) {
	certs := testenv.WriteCerts(t)
	etcd := testenv.StartEtcdTLS(t, &testenv.EtcdTLS{CA: certs.CA, Cert: certs.ServerCert, Key: certs.ServerKey,
		ClientCert: certs.ClientCert, ClientKey: certs.ClientKey})
	if !strings.HasPrefix(etcd.Endpoints()[0], "https://") {
		t.Fatalf("endpoint %s", etcd.Endpoints()[0])
	}
	g := newGroup(t, etcd.Endpoints(), 2*time.Second)
	store := func(tls *model.EtcdTLS) *model.EtcdStore {
		s := g.store(nil)
		s.TLS = tls
		return s
	}
	good := store(&model.EtcdTLS{CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey})
	r, err := Open(good, Options{ID: "tls1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	defer func() { cancel(); <-done; r.Close() }()
	var term *Term
	select {
	case term = <-r.Terms():
	case <-time.After(30 * time.Second):
		t.Fatal("no term over mTLS")
	}
	if _, err := term.Save(ctxTimeout(t, 10*time.Second), "api", []byte("tls")); err != nil {
		t.Fatal(err)
	}

	for name, tls := range map[string]*model.EtcdTLS{
		"no client certificate": {CA: certs.CA},
		"another CA":            {CA: certs.OtherCA, Cert: certs.ClientCert, Key: certs.ClientKey},
	} {
		bad, err := Open(store(tls), Options{ID: "bad", DialTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = bad.States(ctxTimeout(t, 1500*time.Millisecond))
		bad.Close()
		if err == nil {
			t.Errorf("%s: read states from an etcd that requires mTLS", name)
		}
	}

	for name, tls := range map[string]*model.EtcdTLS{
		"missing CA file":      {CA: certs.CA + ".missing"},
		"CA file without PEM":  {CA: certs.ClientKey},
		"key does not match":   {CA: certs.CA, Cert: certs.ClientCert, Key: certs.ServerKey},
		"missing client files": {Cert: "/nonexistent/c.pem", Key: "/nonexistent/k.pem"},
	} {
		if _, err := Open(store(tls), Options{ID: "bad"}); err == nil || !strings.Contains(err.Error(), "etcd tls") {
			t.Errorf("%s: Open gave %v, want an error naming the etcd tls setting", name, err)
		}
	}
}
