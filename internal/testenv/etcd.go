package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// EtcdCluster is a real etcd cluster (Debian's etcd-server): one or more members on
// 127.0.0.1, each with its own data directory.
type EtcdCluster struct {
	bin     string
	dir     string
	tls     *EtcdTLS
	health  *http.Client
	members []*EtcdMember
}

// EtcdTLS makes the members serve clients over https and require client certificates
// signed by CA (mTLS). ClientCert and ClientKey are used for the health checks.
type EtcdTLS struct {
	CA, Cert, Key         string // the CA that signs client certificates; the server's pair
	ClientCert, ClientKey string
}

// EtcdMember is one etcd process of an EtcdCluster.
type EtcdMember struct {
	// Name is the member's name (m0, m1, …).
	Name string
	// ClientURL is the member's client URL, http(s)://127.0.0.1:PORT.
	ClientURL string
	peerURL   string
	dataDir   string
	logPath   string
	args      []string
	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{}
}

// StartEtcd starts a single-member etcd. See StartEtcdCluster.
func StartEtcd(t testing.TB) *EtcdCluster { return StartEtcdCluster(t, 1) }

// StartEtcdCluster starts an n-member etcd cluster on 127.0.0.1 with ephemeral ports and
// waits until every member is healthy. It skips the test loudly when etcd is not
// installed (fails under CI) and kills every member when the test ends.
func StartEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	return startEtcd(t, n, nil)
}

// StartEtcdTLS starts a single-member etcd that serves clients over https with mTLS.
func StartEtcdTLS(t testing.TB, tls *EtcdTLS) *EtcdCluster {
	t.Helper()
	return startEtcd(t, 1, tls)
}

func startEtcd(t testing.TB, n int, tls *EtcdTLS) *EtcdCluster {
	t.Helper()
	bin := LookPath(t, "etcd-server", "etcd")
	c, err := LaunchEtcd(bin, n, tls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range c.members {
				t.Logf("--- etcd %s log (tail):\n%s", m.Name, m.Log())
			}
		}
		c.Close()
	})
	return c
}

// LaunchEtcd starts an n-member etcd cluster from bin (for tools outside tests; tests use
// StartEtcdCluster). Close stops it and removes its data.
func LaunchEtcd(bin string, n int, tls *EtcdTLS) (*EtcdCluster, error) {
	// Ports are picked free and then bound by etcd: another process may take one in
	// between, so a cluster that fails to start is tried again on new ports.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c := &EtcdCluster{bin: bin, tls: tls, health: http.DefaultClient}
		if lastErr = c.start(n); lastErr == nil {
			return c, nil
		}
		c.Close()
	}
	return nil, fmt.Errorf("etcd cluster of %d did not start: %w", n, lastErr)
}

func (c *EtcdCluster) start(n int) error {
	dir, err := os.MkdirTemp("", "sluice-etcd-")
	if err != nil {
		return err
	}
	c.dir = dir
	scheme := "http://"
	if c.tls != nil {
		scheme = "https://"
		hc, err := tlsClient(c.tls)
		if err != nil {
			return err
		}
		c.health = hc
	}
	var initial []string
	for i := 0; i < n; i++ {
		client, err := freePort()
		if err != nil {
			return err
		}
		peer, err := freePort()
		if err != nil {
			return err
		}
		m := &EtcdMember{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: scheme + client,
			peerURL:   "http://" + peer,
			dataDir:   filepath.Join(dir, fmt.Sprintf("m%d.etcd", i)),
			logPath:   filepath.Join(dir, fmt.Sprintf("m%d.log", i)),
		}
		c.members = append(c.members, m)
		initial = append(initial, m.Name+"="+m.peerURL)
	}
	for _, m := range c.members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.peerURL,
			"--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", "sluice-test-" + filepath.Base(dir),
			"--logger", "zap", "--log-level", "warn",
		}
		if c.tls != nil {
			m.args = append(m.args, "--cert-file", c.tls.Cert, "--key-file", c.tls.Key,
				"--client-cert-auth", "--trusted-ca-file", c.tls.CA)
		}
		if err := c.launch(m); err != nil {
			return err
		}
	}
	for _, m := range c.members {
		if err := c.waitHealthy(m, 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func tlsClient(t *EtcdTLS) (*http.Client, error) {
	c, err := clientTLSConfig(t.CA, t.ClientCert, t.ClientKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: c}}, nil
}

// clientTLSConfig trusts the CA in caFile and presents the client pair.
func clientTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}

// freePort returns a 127.0.0.1:PORT that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (c *EtcdCluster) launch(m *EtcdMember) error {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	m.mu.Lock()
	m.cmd, m.done = cmd, done
	m.mu.Unlock()
	return nil
}

// waitHealthy polls the member's /health until it reports a healthy member of a cluster
// with a leader, or the member exits.
func (c *EtcdCluster) waitHealthy(m *EtcdMember, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
		if resp, err := c.health.Do(req); err == nil {
			var b [256]byte
			k, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(b[:k]), `"true"`) {
				return nil
			}
		}
		select {
		case <-m.exited():
			return fmt.Errorf("etcd %s exited:\n%s", m.Name, m.Log())
		case <-ctx.Done():
			return fmt.Errorf("etcd %s not healthy after %s:\n%s", m.Name, timeout, m.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (m *EtcdMember) exited() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return m.done
}

// Log returns the tail of the member's log (for failure messages).
func (m *EtcdMember) Log() string {
	b, _ := os.ReadFile(m.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Endpoints returns every member's client URL, as etcd clients take them.
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.ClientURL
	}
	return out
}

// Kill sends SIGKILL to member i (as kill -9 does) and waits until it is gone.
func (c *EtcdCluster) Kill(i int) { c.members[i].kill() }

// Restart starts member i again on its ports and data directory (killing it first if
// it runs) and waits until it is healthy, which in a cluster needs a quorum of members.
func (c *EtcdCluster) Restart(i int) error {
	m := c.members[i]
	m.kill()
	if err := c.launch(m); err != nil {
		return err
	}
	if err := c.waitHealthy(m, 30*time.Second); err != nil {
		m.kill()
		return err
	}
	return nil
}

func (m *EtcdMember) kill() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Close kills every member and removes the data directories.
func (c *EtcdCluster) Close() {
	for _, m := range c.members {
		m.kill()
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// Proxy is a TCP proxy a test controls, to put a network partition between a client and
// a server: Cut stops every byte in both directions (connections stay open, as when a
// cable is pulled, and what was sent waits in the socket buffers), Restore lets them flow
// again, and Reset closes every connection.
type Proxy struct {
	// Addr is the host:port clients dial instead of the target.
	Addr   string
	target string
	ln     net.Listener

	mu     sync.Mutex
	open   chan struct{} // closed while traffic flows
	conns  map[net.Conn]bool
	closed bool
}

// StartProxy listens on 127.0.0.1 (an ephemeral port) and forwards every connection to
// target (host:port). It stops when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, open: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(p.open)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// URL is "http://" + Addr, for etcd endpoints.
func (p *Proxy) URL() string { return "http://" + p.Addr }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *Proxy) handle(c net.Conn) {
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	p.wait()
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(u) {
		return
	}
	defer p.untrack(u)
	done := make(chan struct{}, 2)
	go func() { p.pipe(u, c); done <- struct{}{} }()
	go func() { p.pipe(c, u); done <- struct{}{} }()
	<-done
}

// pipe copies src to dst, holding every chunk while the proxy is cut.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) wait() {
	p.mu.Lock()
	open := p.open
	p.mu.Unlock()
	<-open
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Cut stops all traffic through the proxy, in both directions, on open and new
// connections, until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default:
	}
}

// Restore lets traffic flow again; what was held is delivered.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

// Reset closes every open connection (the peer sees a reset); new ones are accepted.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Restore()
	p.ln.Close()
	p.Reset()
}
