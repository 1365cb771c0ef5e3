package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/internal/testenv"
)

// TestReplicasShareStickyKeys: two replicas on one etcd sign sticky cookies with the same
// keys (the first one's), so a cookie one router set is valid at the other.
func TestReplicasShareStickyKeys(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	p := filepath.Join(t.TempDir(), "c.yaml")
	listen, _ := freeAddr("")
	writeConfig(t, p, withEtcd(serveConfig(listen, "127.0.0.1:0", "unused", "{}"), etcd.Endpoints()))
	cfg, _, err := loadConfig([]string{p})
	if err != nil {
		t.Fatal(err)
	}
	var keys [][][]byte
	for _, admin := range []string{"127.0.0.1:1", "127.0.0.1:2"} {
		n, err := openReplica(context.Background(), cfg, admin, zap.NewNop(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		k, err := stickyKeys(cfg, n)
		n.stop()
		if err != nil || len(k) != 1 || len(k[0]) != 32 {
			t.Fatalf("replica at %s: keys %v, %v", admin, k, err)
		}
		keys = append(keys, k)
	}
	if !bytes.Equal(keys[0][0], keys[1][0]) {
		t.Error("the two replicas sign sticky cookies with different keys")
	}
}

// TestAdvertisedAdmin: the environment wins; a specific bound host is kept; an
// all-interfaces host becomes a non-loopback address of this machine.
func TestAdvertisedAdmin(t *testing.T) {
	t.Setenv(envAdvertise, "")
	if a, err := advertisedAdmin("127.0.0.1:9900"); err != nil || a != "127.0.0.1:9900" {
		t.Errorf("bound 127.0.0.1:9900: %q %v", a, err)
	}
	if a, err := advertisedAdmin("0.0.0.0:9900"); err == nil {
		host, port, _ := net.SplitHostPort(a)
		if ip := net.ParseIP(host); port != "9900" || ip == nil || ip.IsLoopback() || ip.IsUnspecified() {
			t.Errorf("bound 0.0.0.0:9900: advertised %q", a)
		}
	} else if !strings.Contains(err.Error(), envAdvertise) {
		t.Errorf("bound 0.0.0.0:9900 on a machine without another address: %v", err)
	}
	t.Setenv(envAdvertise, "sluice-1.example:9900")
	if a, err := advertisedAdmin("0.0.0.0:9900"); err != nil || a != "sluice-1.example:9900" {
		t.Errorf("with %s: %q %v", envAdvertise, a, err)
	}
	t.Setenv(envAdvertise, "no-port")
	if _, err := advertisedAdmin("0.0.0.0:9900"); err == nil || !strings.Contains(err.Error(), "want HOST:PORT") {
		t.Errorf("bad %s: %v", envAdvertise, err)
	}
}
