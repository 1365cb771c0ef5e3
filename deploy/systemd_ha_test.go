package deploy

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-mesh/sluice/config"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

const (
	haSystemdDir = "deploy/systemd/ha"
	dropInPath   = haSystemdDir + "/ha.conf"
)

// etcdEnv reads one node's /etc/default/etcd (KEY=VALUE lines).
func etcdEnv(t *testing.T, node int) map[string]string {
	t.Helper()
	rel := fmt.Sprintf("%s/etcd-node%d.env", haSystemdDir, node)
	env := map[string]string{}
	for i, l := range strings.Split(string(readFile(t, rel)), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || !strings.HasPrefix(k, "ETCD_") {
			t.Fatalf("%s:%d: not ETCD_KEY=VALUE: %q", rel, i+1, l)
		}
		if _, dup := env[k]; dup {
			t.Fatalf("%s:%d: %s set twice", rel, i+1, k)
		}
		env[k] = v
	}
	return env
}

// TestSystemdHAFiles checks the three-node setup's files against each other: every node's
// etcd settings name itself and the same cluster, the Sluice config lists every member,
// and the drop-in hands the dynamic user exactly the credentials the config reads.
func TestSystemdHAFiles(t *testing.T) {
	var clients []string
	var cluster string
	for n := 1; n <= 3; n++ {
		env := etcdEnv(t, n)
		name := env["ETCD_NAME"]
		if name != fmt.Sprintf("node%d", n) {
			t.Errorf("node %d: ETCD_NAME %q", n, name)
		}
		if n == 1 {
			cluster = env["ETCD_INITIAL_CLUSTER"]
		} else if env["ETCD_INITIAL_CLUSTER"] != cluster {
			t.Errorf("node %d: ETCD_INITIAL_CLUSTER %q differs from node1's %q", n, env["ETCD_INITIAL_CLUSTER"], cluster)
		}
		if !slices.Contains(strings.Split(cluster, ","), name+"="+env["ETCD_INITIAL_ADVERTISE_PEER_URLS"]) {
			t.Errorf("node %d: its peer URL %s is not its entry in the initial cluster %s", n, env["ETCD_INITIAL_ADVERTISE_PEER_URLS"], cluster)
		}
		if env["ETCD_LISTEN_PEER_URLS"] != env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] || env["ETCD_LISTEN_CLIENT_URLS"] != env["ETCD_ADVERTISE_CLIENT_URLS"] {
			t.Errorf("node %d: listens on other URLs than it advertises: %v", n, env)
		}
		if env["ETCD_CLIENT_CERT_AUTH"] != "true" || env["ETCD_PEER_CLIENT_CERT_AUTH"] != "true" {
			t.Errorf("node %d: clients and peers must present certificates", n)
		}
		clients = append(clients, env["ETCD_ADVERTISE_CLIENT_URLS"])
	}
	if len(strings.Split(cluster, ",")) != 3 {
		t.Errorf("initial cluster %q, want three members", cluster)
	}

	cfg, ds := config.LoadBytes("sluice.yaml", readFile(t, haSystemdDir+"/sluice.yaml"))
	if ds.HasErrors() {
		t.Fatalf("%s/sluice.yaml: %s", haSystemdDir, ds)
	}
	e := cfg.ControlPlane.Etcd
	if e == nil || !slices.Equal(e.Endpoints, clients) || e.TLS == nil || e.TLS.Cert == "" || e.TLS.CA == "" {
		t.Fatalf("store.etcd %+v, want every member's client URL %v with TLS", e, clients)
	}

	u := parseUnit(t, string(readFile(t, unitPath)))
	d := parseUnit(t, string(readFile(t, dropInPath)))
	if !slices.Contains(d["Unit"]["After"], "etcd.service") || !slices.Contains(d["Unit"]["Wants"], "etcd.service") {
		t.Error("the drop-in must order Sluice after the node's etcd.service (and so stop it first)")
	}
	creds := map[string]string{} // path the service sees → file on the host
	for _, c := range append(u["Service"]["LoadCredential"], d["Service"]["LoadCredential"]...) {
		name, file, _ := strings.Cut(c, ":")
		creds["/run/credentials/sluice.service/"+name] = file
	}
	for field, p := range map[string]string{"admin.tokenFile": cfg.ControlPlane.Admin.TokenFile,
		"tls.ca": e.TLS.CA, "tls.cert": e.TLS.Cert, "tls.key": e.TLS.Key} {
		if creds[p] == "" {
			t.Errorf("%s %s is not a credential the units load (the dynamic user reads nothing else): %v", field, p, creds)
		}
	}
	// The drop-in keeps the base unit's command line: the config path is the same.
	if d["Service"]["ExecStart"] != nil || !strings.Contains(u.get("Service", "ExecStart"), "/etc/sluice/sluice.yaml") {
		t.Errorf("ExecStart: base %q, drop-in %q", u.get("Service", "ExecStart"), d["Service"]["ExecStart"])
	}
}

// TestSystemdHAVerify runs systemd-analyze verify on the unit with its drop-in.
func TestSystemdHAVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd); TestSystemdHAFiles checks the drop-in's content")
	}
	bin := sluiceBinary(t)
	dir := t.TempDir()
	unitFile := filepath.Join(dir, "sluice.service")
	text := strings.ReplaceAll(string(readFile(t, unitPath)), "/usr/local/bin/sluice", bin)
	if err := os.WriteFile(unitFile, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(unitFile+".d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(unitFile+".d", "ha.conf"), readFile(t, dropInPath), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", "--man=no", unitFile)
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
	out, err := cmd.CombinedOutput()
	// etcd.service is not installed on every machine that runs the tests.
	var problems []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.Contains(l, "etcd.service") {
			problems = append(problems, l)
		}
	}
	if len(problems) > 0 {
		t.Errorf("systemd-analyze verify with the drop-in: %v\n%s", err, out)
	}
}

// TestSystemdHAClusterRuns starts the three nodes' etcd members from their
// /etc/default/etcd files with Debian's etcd (addresses moved to loopback, certificates
// made for the test), and has a Sluice replica on the nodes' config lead and write over mTLS.
func TestSystemdHAClusterRuns(t *testing.T) {
	certs := testenv.WriteCerts(t)
	files := strings.NewReplacer(
		"/etc/etcd/pki/node.pem", certs.ServerCert, "/etc/etcd/pki/node-key.pem", certs.ServerKey,
		"/etc/etcd/pki/ca.pem", certs.CA,
		"/run/credentials/sluice.service/etcd-ca.pem", certs.CA,
		"/run/credentials/sluice.service/etcd-client.pem", certs.ClientCert,
		"/run/credentials/sluice.service/etcd-client-key.pem", certs.ClientKey,
	)
	var pairs []string
	for n := 1; n <= 3; n++ {
		pairs = append(pairs, fmt.Sprintf("10.0.0.%d:2379", n), freeAddr(t), fmt.Sprintf("10.0.0.%d:2380", n), freeAddr(t))
	}
	hosts := strings.NewReplacer(pairs...)
	var members []etcdProc
	for n := 1; n <= 3; n++ {
		var env []string
		for k, v := range etcdEnv(t, n) {
			if k == "ETCD_DATA_DIR" {
				v = t.TempDir()
			}
			env = append(env, k+"="+files.Replace(hosts.Replace(v)))
		}
		slices.Sort(env)
		client := hosts.Replace(fmt.Sprintf("10.0.0.%d:2379", n))
		members = append(members, etcdProc{env: env, health: "https://" + client + "/health"})
	}
	hc, err := mtlsClient(certs)
	if err != nil {
		t.Fatal(err)
	}
	startEtcdMembers(t, members, hc)
	leadAndWrite(t, files.Replace(hosts.Replace(string(readFile(t, path.Join(haSystemdDir, "sluice.yaml"))))))
}

func mtlsClient(c *testenv.Certs) (*http.Client, error) {
	tlsCfg, err := testenv.ClientTLS(c)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}, nil
}
