package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/xds/xdstest"
)

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestServerMTLSWithReload(t *testing.T) {
	old := tlsRecheck
	tlsRecheck = 0
	t.Cleanup(func() { tlsRecheck = old })

	dir := t.TempDir()
	ca := testenv.NewCA(t, "test CA")
	files := &model.TLS{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key"), ClientCAFile: filepath.Join(dir, "ca.pem")}
	cert, key := ca.Issue(t, "sluice-1", 2, x509.ExtKeyUsageServerAuth)
	writeFile(t, files.CertFile, cert)
	writeFile(t, files.KeyFile, key)
	writeFile(t, files.ClientCAFile, ca.PEM)
	ccert, ckey := ca.Issue(t, "envoy", 3, x509.ExtKeyUsageClientAuth)
	clientPair, err := tls.X509KeyPair(ccert, ckey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	s, err := New(Options{Logger: zap.NewNop(), Address: "127.0.0.1:0", TLS: files, Keepalive: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if err := s.Apply(e2eSnapshot(1, "127.0.0.1:1", []string{"127.0.0.1:2"}, 10)); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()

	// With a client certificate: served over TLS.
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{clientPair}, ServerName: "127.0.0.1",
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	c := startEnvoy(t, cc, xdstest.Options{Node: &corev3.Node{Id: "mtls"}})
	eventually(t, 5*time.Second, "routes over mTLS", func() bool { return c.Accepted(resourcev3.RouteType) != "" })

	// Without one: the handshake fails.
	_, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if err == nil {
		// TLS 1.3 reports a missing client certificate on the first read.
		conn, _ := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
		if conn != nil {
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			_ = conn.Close()
		}
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}

	peerCN := func() string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{clientPair}, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := peerCN(); cn != "sluice-1" {
		t.Fatalf("served certificate %q", cn)
	}
	// Replace the certificate: new connections get the new one.
	cert2, key2 := ca.Issue(t, "sluice-2", 4, x509.ExtKeyUsageServerAuth)
	writeFile(t, files.CertFile, cert2)
	writeFile(t, files.KeyFile, key2)
	if cn := peerCN(); cn != "sluice-2" {
		t.Fatalf("after replacing the files the server still presents %q", cn)
	}
	// A broken replacement keeps the previous certificate.
	writeFile(t, files.KeyFile, []byte("not a key"))
	if cn := peerCN(); cn != "sluice-2" {
		t.Fatalf("after a broken reload the server presents %q", cn)
	}
}
