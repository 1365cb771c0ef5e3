package deploy

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/config"
	"github.com/sluice-mesh/sluice/ha"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

// etcdProc is how a deploy file starts one etcd member: flags and environment variables
// (as the StatefulSet's args or Debian's /etc/default/etcd give them), already moved to
// loopback addresses and temp paths.
type etcdProc struct {
	args   []string
	env    []string
	health string // URL that answers {"health":"true"} once the member is in a quorum
}

// startEtcdMembers runs the members with Debian's etcd (the real thing the files are for)
// and waits until each reports health; they are killed when the test ends.
func startEtcdMembers(t *testing.T, members []etcdProc, client *http.Client) {
	t.Helper()
	bin := testenv.LookPath(t, "etcd-server", "etcd")
	for i, m := range members {
		logf, err := os.Create(filepath.Join(t.TempDir(), fmt.Sprintf("etcd-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, m.args...)
		cmd.Env = append(os.Environ(), m.env...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("etcd member %d log:\n%s", i, b)
			}
			logf.Close()
		})
	}
	for i, m := range members {
		testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("etcd member %d healthy at %s", i, m.health), func() bool {
			resp, err := client.Get(m.health)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var b [256]byte
			n, _ := resp.Body.Read(b[:])
			return resp.StatusCode == http.StatusOK && strings.Contains(string(b[:n]), `"true"`)
		})
	}
}

// leadAndWrite loads a Sluice config, runs a replica on its store.etcd and checks that
// it leads and writes a state: the config and the etcd cluster work together.
func leadAndWrite(t *testing.T, sluiceYAML string) {
	t.Helper()
	cfg, ds := config.LoadBytes("sluice.yaml", []byte(sluiceYAML))
	if ds.HasErrors() || cfg.ControlPlane.Etcd == nil {
		t.Fatalf("config: %s (etcd store %+v)", ds, cfg.ControlPlane.Etcd)
	}
	r, err := ha.Open(cfg.ControlPlane.Etcd, ha.Options{ID: "deploy-test", ConfigDigest: ha.ConfigDigest(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	defer func() { cancel(); <-done; r.Close() }()
	select {
	case term := <-r.Terms():
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if _, err := term.Save(wctx, "backend-api", []byte(`{"step":0}`)); err != nil {
			t.Fatalf("write through the shipped config: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("a replica on the shipped config did not lead within 60s")
	}
}
