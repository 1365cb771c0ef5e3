package router

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

func stickySnapshot(addr string, stable, canary *backend, weight int) *model.Snapshot {
	s := twoClusters(addr, stable, canary, weight)
	s.Listeners[0].StickySessions = &model.StickySessions{Cookie: "sluice-web", MaxAge: time.Hour}
	s.Listeners[0].Routes[0].HeaderRoutes = []model.HeaderRoute{
		{Name: "force", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-canary", Value: model.StringMatch{Exact: "always"}}}},
	}
	return s
}

// TestStickySharesFollowTheWeight: returning clients keep a signed bucket; the canary
// gets exactly the clients whose bucket is below its weight, so the share equals the
// weight, clients only move stable → canary as it rises, all come back on abort, and a
// retry brings the same ones back. A forged cookie pins nothing.
func TestStickySharesFollowTheWeight(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	base := stickySnapshot(addr, stable, canary, 0)
	r, _ := startRouter(t, base, Options{})
	c := newClient()
	const clients = 200
	cookies := make([]string, clients)
	for i := range cookies {
		st, who, resp := get(t, c, "http://"+addr+"/", nil)
		v, ok := cookieValue(resp, "sluice-web")
		if st != 200 || who != "stable" || !ok {
			t.Fatalf("client %d: %d from %q, cookie %q %v", i, st, who, v, ok)
		}
		cookies[i] = v
	}
	// visit sends every client once with its cookie and returns who went to the canary.
	visit := func(w int) map[int]bool {
		on := map[int]bool{}
		for i, v := range cookies {
			_, who, resp := get(t, c, "http://"+addr+"/", map[string]string{"Cookie": "a=b; sluice-web=" + v})
			if nv, set := cookieValue(resp, "sluice-web"); set {
				t.Fatalf("weight %d: valid cookie of client %d rewritten to %q", w, i, nv)
			}
			if who == "canary" {
				on[i] = true
			}
		}
		return on
	}
	version := uint64(10)
	apply := func(w int) {
		version++
		if err := r.Apply(withWeight(base, version, w)); err != nil {
			t.Fatal(err)
		}
	}
	var prev map[int]bool
	var at10 map[int]bool
	for _, w := range []int{10, 25, 50, 80} {
		apply(w)
		on := visit(w)
		if len(on) != clients*w/100 {
			t.Fatalf("weight %d: %d of %d returning clients on the canary, want exactly %d", w, len(on), clients, clients*w/100)
		}
		for i := range prev {
			if !on[i] {
				t.Fatalf("weight %d: client %d moved canary → stable while the weight rose", w, i)
			}
		}
		if w == 10 {
			at10 = on
		}
		prev = on
	}
	apply(0) // abort
	if on := visit(0); len(on) != 0 {
		t.Fatalf("after abort %d clients still on the canary", len(on))
	}
	apply(10) // retry
	on := visit(10)
	if len(on) != len(at10) {
		t.Fatalf("retry at 10%%: %d clients on the canary, first time %d", len(on), len(at10))
	}
	for i := range at10 {
		if !on[i] {
			t.Fatalf("retry at 10%%: client %d did not come back to the canary", i)
		}
	}
	// Header routes win over the cookie.
	stableClient := -1
	for i := range cookies {
		if !on[i] {
			stableClient = i
			break
		}
	}
	if _, who, _ := get(t, c, "http://"+addr+"/", map[string]string{"Cookie": "sluice-web=" + cookies[stableClient], "X-Canary": "always"}); who != "canary" {
		t.Fatalf("header route lost to the sticky cookie: went to %q", who)
	}
	// Forged cookies: bucket 0 (always canary while the weight is above 0) without the
	// right MAC, a MAC of another cookie, garbage. Each is ignored and replaced.
	forged := []string{"0.AAAAAAAAAAAAAAAA", "0", "0." + strings.SplitN(cookies[0], ".", 2)[1], "00.x", "-1.x", "100.x", "canary"}
	if b, _, _ := strings.Cut(cookies[0], "."); b == "0" {
		forged[2] = "1." + strings.SplitN(cookies[0], ".", 2)[1]
	}
	canaryHits := 0
	for _, f := range forged {
		for k := 0; k < 5; k++ {
			_, who, resp := get(t, c, "http://"+addr+"/", map[string]string{"Cookie": "sluice-web=" + f})
			nv, set := cookieValue(resp, "sluice-web")
			if !set || nv == f {
				t.Fatalf("forged cookie %q not replaced (Set-Cookie %q)", f, nv)
			}
			b, _ := strconv.Atoi(strings.SplitN(nv, ".", 2)[0])
			if want := map[bool]string{true: "canary", false: "stable"}[b < 10]; who != want {
				t.Fatalf("forged %q: routed to %s, but the issued bucket %d says %s", f, who, b, want)
			}
			if who == "canary" {
				canaryHits++
			}
		}
	}
	if canaryHits > len(forged)*5/2 {
		t.Fatalf("forged bucket-0 cookies reached the canary %d of %d times at weight 10", canaryHits, len(forged)*5)
	}
}

// TestStickyKeyRotation: a cookie signed with the previous key still holds its bucket
// and is re-signed with the current one; once the old key is gone, it is replaced.
func TestStickyKeyRotation(t *testing.T) {
	oldKey, newKey := []byte("0123456789abcdef-old"), []byte("0123456789abcdef-new")
	var seq atomic.Uint64
	old := &stickyCookie{name: "s", keys: [][]byte{oldKey}, next: &seq}
	rotated := &stickyCookie{name: "s", keys: [][]byte{newKey, oldKey}, next: &seq}
	retired := &stickyCookie{name: "s", keys: [][]byte{newKey}, next: &seq}
	val := func(setCookie string) string {
		v := strings.TrimPrefix(strings.SplitN(setCookie, ";", 2)[0], "s=")
		return v
	}
	v := val(old.issue(42))
	if b, cookie := rotated.bucket([]string{"s=" + v}, nil); b != 42 || cookie == "" || val(cookie) == v {
		t.Fatalf("old-key cookie after rotation: bucket %d, re-issued %q", b, cookie)
	} else if b2, again := rotated.bucket([]string{"s=" + val(cookie)}, nil); b2 != 42 || again != "" {
		t.Fatalf("re-issued cookie: bucket %d, re-issued again %q", b2, again)
	}
	if b, cookie := retired.bucket([]string{"s=" + v}, nil); cookie == "" || val(cookie) == v {
		t.Fatalf("retired-key cookie kept (bucket %d, %q)", b, cookie)
	}
	// Another cookie's MAC does not verify under this name.
	other := &stickyCookie{name: "t", keys: [][]byte{oldKey}, next: &seq}
	if _, _, ok := old.verify(val(strings.Replace(other.issue(42), "t=", "s=", 1))); ok {
		t.Fatal("a MAC for cookie t verified for cookie s")
	}
}

func TestLoadStickyKeys(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "state", "sticky.key")
	k1, err := LoadStickyKeys(file)
	if err != nil || len(k1) != 1 || len(k1[0]) != 32 {
		t.Fatalf("create: %v %v", k1, err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	k2, err := LoadStickyKeys(file)
	if err != nil || string(k2[0]) != string(k1[0]) {
		t.Fatalf("reload gave another key: %v", err)
	}
	os.WriteFile(file, []byte("# comment\n"+strings.Repeat("ab", 32)+"\n\nnot-hex\n"), 0o600)
	if _, err := LoadStickyKeys(file); err == nil || !strings.Contains(err.Error(), file+":4:") {
		t.Fatalf("bad line: %v", err)
	}
}
