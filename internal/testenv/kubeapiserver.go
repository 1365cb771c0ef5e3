package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// KubeAPIServerVersion is the kube-apiserver scripts/kube-apiserver.sh builds.
const KubeAPIServerVersion = "v1.37.2"

// KubeAPIServer is a real kube-apiserver, with RBAC on, backed by an etcd of its own.
// No controller runs: tests create the objects controllers would (EndpointSlices).
type KubeAPIServer struct {
	// URL is https://127.0.0.1:PORT (a self-signed certificate).
	URL string
	// AdminToken authenticates as a member of system:masters.
	AdminToken string
	// StartTime is how long etcd and the API server took to become ready.
	StartTime time.Duration
	dir       string
}

// kubeAPIServerPath finds the binary: $SLUICE_KUBE_APISERVER, kube-apiserver on PATH,
// or what scripts/kube-apiserver.sh built.
func kubeAPIServerPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SLUICE_KUBE_APISERVER"); p != "" {
		return p
	}
	if p, err := exec.LookPath("kube-apiserver"); err == nil {
		return p
	}
	dir := os.Getenv("SLUICE_TOOLS")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "sluice")
	}
	p := filepath.Join(dir, "kube-apiserver-"+KubeAPIServerVersion)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	msg := "MISSING DEPENDENCY: no kube-apiserver; build it with scripts/kube-apiserver.sh (make test-deps does), or set SLUICE_KUBE_APISERVER"
	if InCI() {
		t.Fatal(msg + " — CI=true, so this is a failure, not a skip")
	}
	t.Skip(msg)
	return ""
}

// StartKubeAPIServer starts etcd (Debian's etcd-server) and kube-apiserver on
// 127.0.0.1, each on free ports, waits until the API server is ready, and stops both
// when the test ends. It skips the test loudly (fails under CI) when either is missing.
func StartKubeAPIServer(t testing.TB) *KubeAPIServer {
	t.Helper()
	bin := kubeAPIServerPath(t)
	etcd := LookPath(t, "etcd-server", "etcd")
	start := time.Now()
	k := &KubeAPIServer{dir: t.TempDir(), AdminToken: randomToken(t)}

	client, peer := FreeAddr(t), FreeAddr(t)
	StartProcess(t, "etcd", etcd, "--name=default", "--data-dir="+filepath.Join(k.dir, "etcd"),
		"--listen-client-urls=http://"+client, "--advertise-client-urls=http://"+client,
		"--listen-peer-urls=http://"+peer, "--initial-advertise-peer-urls=http://"+peer,
		"--initial-cluster=default=http://"+peer, "--log-level=warn")
	WaitFor(t, 30*time.Second, "etcd to be healthy", func() bool {
		resp, err := http.Get("http://" + client + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `"true"`)
	})

	saKey := filepath.Join(k.dir, "sa.key")
	writeRSAKey(t, saKey)
	tokens := filepath.Join(k.dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(k.AdminToken+",admin,admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	k.URL = "https://" + addr
	api := StartProcess(t, "kube-apiserver", bin,
		"--etcd-servers=http://"+client, "--bind-address=127.0.0.1", "--secure-port="+port,
		"--cert-dir="+filepath.Join(k.dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey, "--token-auth-file="+tokens,
		"--authorization-mode=RBAC", "--service-cluster-ip-range=10.96.0.0/12",
		// No controller-manager runs the token controller; TokenRequest still works.
		"--disable-admission-plugins=ServiceAccount")
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	ready := func() bool {
		req, _ := http.NewRequest(http.MethodGet, k.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+k.AdminToken)
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "ok"
	}
	deadline := time.Now().Add(90 * time.Second)
	for !ready() {
		if api.Exited() || time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready (exited %v)", api.Exited())
		}
		time.Sleep(100 * time.Millisecond)
	}
	k.StartTime = time.Since(start)
	return k
}

// Kubeconfig writes a kubeconfig that authenticates with token and returns its path.
func (k *KubeAPIServer) Kubeconfig(t testing.TB, token string) string {
	t.Helper()
	path := filepath.Join(k.dir, "kubeconfig-"+randomToken(t)[:8])
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: test, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
`, k.URL, token)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func randomToken(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeRSAKey(t testing.TB, path string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
}
