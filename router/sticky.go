package router

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

// Sticky sessions give each client a stable position, a bucket in [0, 100), carried in a
// signed cookie. A route sends bucket b to the leg whose range holds it: the legs other
// than the route's own (stable) cluster take [0, w1), [w1, w1+w2), … in split order and
// the stable cluster the rest. So with a canary at weight w exactly the clients with
// bucket < w are on the canary: the share of returning clients equals the weight, clients
// only move stable → canary as the weight rises, all of them return when it drops to 0
// (abort), and the same ones come back when it rises again (retry).
//
// The cookie value is "BUCKET.MAC": MAC is the first 12 bytes of
// HMAC-SHA256(key, cookie name NUL bucket), base64url. A value that does not verify with
// any key (forged, damaged, or signed with a retired key) is ignored and a new bucket is
// issued; one that verifies with an older key is re-issued, same bucket, under the
// current key. A client can still throw a cookie away to get another bucket; it cannot
// choose its bucket, nor stay on a cluster whose weight no longer covers it.
//
// New clients get buckets from the sequence (start + 61·i) mod 100, which visits every
// bucket once per 100 clients and spreads any run of them evenly.

// stickyMACLen is how many bytes of the HMAC the cookie carries.
const stickyMACLen = 12

// stickyCookie issues and checks one listener's sticky cookies.
type stickyCookie struct {
	name   string
	maxAge int      // seconds
	keys   [][]byte // keys[0] signs; every key verifies
	next   *atomic.Uint64
}

// mac returns the cookie's MAC for bucket under key, base64url.
func (s *stickyCookie) mac(key []byte, bucket int) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s.name))
	m.Write([]byte{0})
	m.Write([]byte(strconv.Itoa(bucket)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:stickyMACLen])
}

// issue returns a Set-Cookie value carrying bucket, signed with the current key.
func (s *stickyCookie) issue(bucket int) string {
	c := http.Cookie{Name: s.name, Value: strconv.Itoa(bucket) + "." + s.mac(s.keys[0], bucket),
		Path: "/", HttpOnly: true, MaxAge: s.maxAge, SameSite: http.SameSiteLaxMode}
	return c.String()
}

// newBucket returns the next bucket for a client without a valid cookie.
func (s *stickyCookie) newBucket() int {
	return int((s.next.Add(1) * 61) % 100)
}

// verify checks one cookie value. It returns the bucket, and whether it was signed with
// the current key.
func (s *stickyCookie) verify(v string) (bucket int, current, ok bool) {
	b, mac, found := strings.Cut(v, ".")
	if !found || len(b) == 0 || len(b) > 2 || (len(b) == 2 && b[0] == '0') {
		return 0, false, false
	}
	n, err := strconv.Atoi(b)
	if err != nil || n < 0 || n >= 100 {
		return 0, false, false
	}
	for i, k := range s.keys {
		if hmac.Equal([]byte(mac), []byte(s.mac(k, n))) {
			return n, i == 0, true
		}
	}
	return 0, false, false
}

// stickyMemo remembers, for one client connection, the last Cookie field that carried a
// valid current cookie, so that a keep-alive client's requests are not each HMAC-checked.
type stickyMemo struct {
	cookie *stickyCookie // the listener's cookie it was checked for (per table)
	field  string
	bucket int
}

// bucket finds the client's bucket in its Cookie fields. It returns the bucket and the
// Set-Cookie value to send: empty when the cookie is valid and current, a re-signed
// cookie for a valid one under an older key, a new bucket's cookie otherwise. memo, when
// not nil, is checked first and updated.
func (s *stickyCookie) bucket(cookies []string, memo *stickyMemo) (int, string) {
	if memo != nil && memo.cookie == s && len(cookies) == 1 && cookies[0] == memo.field {
		return memo.bucket, ""
	}
	for _, line := range cookies {
		for len(line) > 0 {
			var pair string
			pair, line, _ = strings.Cut(line, ";")
			name, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || name != s.name {
				continue
			}
			if b, current, ok := s.verify(strings.Trim(val, `"`)); ok {
				if current {
					if memo != nil && len(cookies) == 1 {
						*memo = stickyMemo{cookie: s, field: cookies[0], bucket: b}
					}
					return b, ""
				}
				return b, s.issue(b)
			}
		}
	}
	b := s.newBucket()
	return b, s.issue(b)
}

// bucketTable maps each bucket of a route to its cluster (see the comment above).
type bucketTable [100]*upstream

func newBucketTable(base *upstream, ups []*upstream, weights []int) *bucketTable {
	var t bucketTable
	i := 0
	fill := func(u *upstream, w int) {
		for ; w > 0 && i < len(t); w-- {
			t[i] = u
			i++
		}
	}
	for j, u := range ups {
		if u != base {
			fill(u, weights[j])
		}
	}
	for j, u := range ups {
		if u == base {
			fill(u, weights[j])
		}
	}
	return &t // weights sum to 100: every bucket is filled
}

// LoadStickyKeys reads the sticky-cookie keys from file, creating it (mode 0600, with one
// random 32-byte key) when it does not exist. The file holds one hex key per line; the
// first signs new cookies, the others only verify (keep the previous key there for one
// cookie lifetime after a rotation). Blank lines and lines starting with # are ignored.
func LoadStickyKeys(file string) ([][]byte, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("sticky key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return nil, fmt.Errorf("sticky key: %w", err)
		}
		content := "# Sluice sticky-session cookie keys, hex, one per line: the first signs, all verify.\n" + hex.EncodeToString(key) + "\n"
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return LoadStickyKeys(file) // created meanwhile by someone else
		}
		if err != nil {
			return nil, fmt.Errorf("sticky key: %w", err)
		}
		_, werr := f.WriteString(content)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("sticky key: %w", werr)
		}
		return [][]byte{key}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sticky key: %w", err)
	}
	return ParseStickyKeys(file, b)
}

// ParseStickyKeys reads keys in LoadStickyKeys's format from b; source names where they
// come from in errors (a file, or an etcd key for replicas sharing them).
func ParseStickyKeys(source string, b []byte) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := hex.DecodeString(line)
		if err != nil || len(k) < 16 {
			return nil, fmt.Errorf("%s:%d: want a hex key of at least 16 bytes (e.g. openssl rand -hex 32)", source, n)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no key in the file", source)
	}
	return keys, nil
}
