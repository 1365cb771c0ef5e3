package router

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// FuzzParseVsNetHTTP is the differential test of the fast path's head parser against
// net/http's request reader (http.ReadRequest plus the checks net/http's server adds:
// supported version, Host present and well-formed, Expect). It feeds both the same bytes
// and fails when
//
//   - the fast path accepts a head net/http refuses, or
//   - both accept and disagree on method, request target, Host (the absolute-form
//     target's authority when there is one), whether the connection closes after, the
//     framing (chunked or Content-Length) or the body length;
//
// or when the fast path refuses a head net/http accepts for a reason not in
// allowedStricter. Those are the places where the fast path is deliberately the stricter
// one (nginx, or the RFC, refuses there too):
//
//	go test -run '^$' -fuzz FuzzParseVsNetHTTP -fuzztime 5m ./router
//
// The seeds are the attack corpus (attack_test.go) and ordinary requests; what the fuzzer
// found worth keeping is in testdata/fuzz/FuzzParseVsNetHTTP.
func FuzzParseVsNetHTTP(f *testing.F) {
	for _, a := range attackCorpus {
		f.Add([]byte(a.send))
	}
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /a/b?c=d%zz HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: x\r\nCookie: a=b; c=d\r\n\r\n",
		"POST /upload HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 5\r\nConnection: keep-alive, X-Drop\r\n\r\nhello",
		"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"get /lower HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(checkAgainstNetHTTP)
}

// FuzzFieldsVsNetHTTP is FuzzParseVsNetHTTP with the head built from parts — a request
// line and three fields whose names start from the ones that decide framing and routing —
// so the fuzzer spends its time on values rather than on finding the line structure:
//
//	go test -run '^$' -fuzz FuzzFieldsVsNetHTTP -fuzztime 5m ./router
func FuzzFieldsVsNetHTTP(f *testing.F) {
	names := []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "Expect", "Upgrade"}
	for i, n := range names {
		f.Add("POST", "/x?y", "1", n, "chunked", names[(i+1)%len(names)], "5", "Host", "h", "hello")
		f.Add("GET", "http://a/b", "0", n, " 100-continue ", "Content-Length", "+1", names[(i+2)%len(names)], "close, keep-alive", "")
	}
	f.Fuzz(func(t *testing.T, method, target, minor, n1, v1, n2, v2, n3, v3, body string) {
		head := method + " " + target + " HTTP/1." + minor + "\r\n" + n1 + ": " + v1 + "\r\n" + n2 + ": " + v2 + "\r\n" + n3 + ":" + v3 + "\r\n\r\n" + body
		checkAgainstNetHTTP(t, []byte(head))
	})
}

// checkAgainstNetHTTP is the check of both fuzz targets.
func checkAgainstNetHTTP(t *testing.T, data []byte) {
	{
		var h reqHead
		head, err := readHead(bufio.NewReader(bytes.NewReader(data)), nil, 1<<20)
		fastOK := err == nil
		// The fast path parses a head found whole in its buffer in place: the same bytes.
		br := bufio.NewReaderSize(bytes.NewReader(data), 64<<10)
		br.Peek(1)
		if inPlace, ok := bufferedHead(br, 1<<20); ok && (!fastOK || !bytes.Equal(inPlace, head)) {
			t.Fatalf("head in place %q, read %q (%v):\n%q", inPlace, head, err, data)
		}
		var herr *headError
		if fastOK {
			if herr = parseHead(head, &h); herr != nil {
				fastOK = false
			}
		}
		// The fast path skips empty lines before a request line (RFC 9112 §2.2); net/http
		// only after a POST. Give net/http the bytes without them.
		trimmed := bytes.TrimLeft(data, "\r\n")
		req, refErr := netHTTPRead(trimmed)
		refOK := refErr == nil
		switch {
		case fastOK && !refOK:
			t.Fatalf("fast path accepts what net/http refuses (%v):\n%q", refErr, data)
		case !fastOK && refOK:
			if why := allowedStricter(head, &h, req); why == "" {
				t.Fatalf("fast path refuses (%v) what net/http accepts, for no listed reason:\n%q", describe(herr, err), data)
			}
		case fastOK && refOK:
			if diff := compareHeads(&h, req); diff != "" {
				t.Fatalf("fast path and net/http disagree on %s:\n%q", diff, data)
			}
		}
	}
}

func describe(herr *headError, err error) string {
	if herr != nil {
		return herr.msg
	}
	return err.Error()
}

// netHTTPRead reads a request as net/http's HTTP/1 server does before calling a handler.
func netHTTPRead(data []byte) (*http.Request, error) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, err
	}
	// net/http's conn.readRequest and conn.serve. ReadRequest drops the Host field from
	// req.Header, so the Host fields are taken from the bytes (net/http refused any with
	// a malformed name already).
	var hosts []string
	for _, l := range bytes.Split(data, []byte("\n"))[1:] {
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) == 0 {
			break
		}
		if i := bytes.IndexByte(l, ':'); i > 0 && equalFold(l[:i], "Host") {
			hosts = append(hosts, string(trimOWS(l[i+1:])))
		}
	}
	req.Header["Host"] = hosts // for allowedStricter
	isH2Upgrade := req.Method == "PRI" && len(req.Header) == 0 && req.URL.Path == "*" && req.Proto == "HTTP/2.0"
	switch {
	case req.ProtoMajor != 1 && !(req.ProtoMajor == 2 && req.ProtoMinor == 0 && req.Method == "PRI" && req.RequestURI == "*"):
		return nil, errVersion
	case req.ProtoAtLeast(1, 1) && len(hosts) == 0 && !isH2Upgrade && req.Method != "CONNECT":
		return nil, errNoHost
	case len(hosts) == 1 && !netHTTPValidHost(hosts[0]):
		return nil, errHost
	case req.Header.Get("Expect") != "" && !strings.EqualFold(req.Header.Get("Expect"), "100-continue"):
		return nil, errExpect
	}
	// httpguts.ValidHeaderFieldName (a token) and ValidHeaderFieldValue (no control
	// bytes but HTAB), which net/http's server checks after ReadRequest.
	for k, vv := range req.Header {
		if !isToken([]byte(k)) {
			return nil, errField
		}
		for _, v := range vv {
			if !validFieldValue([]byte(v)) {
				return nil, errField
			}
		}
	}
	return req, nil
}

// netHTTPValidHost is golang.org/x/net/http/httpguts.ValidHostHeader (which net/http's
// server uses): any byte of a uri-host, port or IP literal, in any order.
func netHTTPValidHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !isAlnum(c) && !strings.ContainsRune("!$%&()*+,-.:;=[]_~'", rune(c)) {
			return false
		}
	}
	return true
}

// compareHeads returns what the two readings of an accepted head disagree on, or "".
func compareHeads(h *reqHead, req *http.Request) string {
	var diffs []string
	if string(h.method) != req.Method {
		diffs = append(diffs, "method "+string(h.method)+" vs "+req.Method)
	}
	if string(h.target) != req.RequestURI {
		diffs = append(diffs, "target "+string(h.target)+" vs "+req.RequestURI)
	}
	if string(h.host) != req.Host {
		diffs = append(diffs, "host "+string(h.host)+" vs "+req.Host)
	}
	if h.close != req.Close {
		diffs = append(diffs, "connection close")
	}
	refChunked := len(req.TransferEncoding) == 1 && req.TransferEncoding[0] == "chunked"
	if h.chunked != refChunked {
		diffs = append(diffs, "chunked")
	}
	fastLen := max(h.length, 0)
	if h.chunked {
		fastLen = -1
	}
	if fastLen != req.ContentLength {
		diffs = append(diffs, "body length")
	}
	return strings.Join(diffs, ", ")
}

// allowedStricter says why the fast path may refuse a head net/http accepts, or "" when
// it may not. Each reason is a place where nginx or the RFCs refuse too.
func allowedStricter(head []byte, h *reqHead, req *http.Request) string {
	lines := bytes.Split(head, []byte("\n"))
	count := func(name string) int {
		n := 0
		for _, l := range lines[min(1, len(lines)):] {
			if i := bytes.IndexByte(l, ':'); i > 0 && equalFold(l[:i], name) {
				n++
			}
		}
		return n
	}
	te := len(req.TransferEncoding) > 0 || count("Transfer-Encoding") > 0
	target := req.RequestURI
	switch {
	case te && count("Content-Length") > 0:
		return "Content-Length with Transfer-Encoding: refused, as nginx does (net/http drops the Content-Length)"
	case count("Content-Length") > 1:
		return "a repeated Content-Length: refused, as nginx does (net/http merges equal values)"
	case req.ContentLength > 999_999_999_999_999_999:
		return "a Content-Length of 19 digits or more"
	case te && req.ProtoMinor == 0:
		return "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1; net/http ignores it)"
	case req.ProtoMajor != 1 || req.ProtoMinor > 1:
		return "an HTTP version other than 1.0 and 1.1 (505)"
	case req.Method == "CONNECT":
		return "CONNECT (405): a reverse proxy tunnels nothing but WebSocket"
	case strings.Contains(target, "#"), target == "*" && req.Method != "OPTIONS",
		!strings.HasPrefix(target, "/") && target != "*" && !absoluteAuthority(target):
		return "a request target RFC 9112 §3.2 does not allow (a fragment, \"*\" without OPTIONS, no http(s) authority, userinfo)"
	case !validHost([]byte(req.Host)):
		return "a Host that is not uri-host [\":\" port] (RFC 3986 §3.2.2; net/http only checks its bytes)"
	case !validHost([]byte(req.Header.Get("Host"))):
		return "a Host field that is not uri-host [\":\" port], beside an absolute-form target"
	case obsFold(lines):
		return "obs-fold (RFC 9112 §5.2 allows refusing it; net/http joins the lines)"
	case badConnectionList(req.Header["Connection"]):
		return "a Connection list element that is not a token"
	}
	return ""
}

// absoluteAuthority reports an absolute-form http(s) target with a non-empty authority
// and no userinfo (what the fast path accepts).
func absoluteAuthority(t string) bool {
	a, _, ok := splitAbsolute([]byte(t))
	return ok && len(a) > 0 && !bytes.ContainsRune(a, '@')
}

func obsFold(lines [][]byte) bool {
	for _, l := range lines[min(1, len(lines)):] {
		if len(l) > 0 && (l[0] == ' ' || l[0] == '\t') {
			return true
		}
	}
	return false
}

func badConnectionList(vs []string) bool {
	for _, v := range vs {
		if !forEachToken([]byte(v), func([]byte) {}) {
			return true
		}
	}
	return false
}
