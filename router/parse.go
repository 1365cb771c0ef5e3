package router

import (
	"bufio"
	"bytes"
	"net/http"
)

// Request heads on the fast path are read and checked here, strictly, by RFC 9112 and
// RFC 9110, before anything is forwarded or handed to net/http:
//
//   - request-line: method SP request-target SP HTTP-version, single spaces; the method a
//     token; the target origin-form ("/..."), absolute-form ("http(s)://authority/...",
//     no userinfo) or "*" (OPTIONS only); no control bytes, spaces or "#" in it, and every
//     "%" in the path followed by two hex digits; the version HTTP/1.1 or HTTP/1.0
//     (another HTTP/x.y is 505).
//   - fields: a token name followed directly by ":" (whitespace before the colon, a
//     continuation line (obs-fold), a control byte, CR or NUL anywhere is 400); values
//     are VCHAR, obs-text, SP and HTAB only.
//   - Host: exactly one on HTTP/1.1, a valid uri-host [":" port].
//   - framing: Content-Length is 1*DIGIT and appears once; Transfer-Encoding appears
//     once and is exactly "chunked" (else 501); both together are 400 (as nginx), and so
//     is Transfer-Encoding on HTTP/1.0 (RFC 9112 §6.1).
//   - Expect: only "100-continue" (else 417); CONNECT is 405 (a reverse proxy tunnels
//     nothing but WebSocket).
//
// A head that passes is one net/http reads the same way (same method, target, Host,
// framing and length: checked by FuzzParseVsNetHTTP), so handing it to net/http cannot
// desynchronise the two. Where net/http is more lenient, the fast path is the stricter
// one; parse_fuzz_test.go lists each difference.

// reqHead is a parsed request head. Its byte slices point into the raw head.
type reqHead struct {
	method []byte
	target []byte
	minor  byte   // HTTP/1.<minor>: '0' or '1'
	host   []byte // the Host field, or the authority of an absolute-form target
	// hostField reports whether a Host field was present.
	hostField bool
	length    int64 // Content-Length; -1 when absent
	chunked   bool  // Transfer-Encoding: chunked
	close     bool  // the client asked to close after this request (or HTTP/1.0 without keep-alive)
	expect    bool  // Expect: 100-continue
	// websocket: Upgrade: websocket with Connection: upgrade, to be tunnelled.
	websocket bool
	// upgrade: an Upgrade field is present (any token); stripped unless websocket.
	upgrade  bool
	absolute bool // absolute-form target
	fields   []headerField
	// dropNames are the names the Connection field lists besides close, keep-alive and
	// upgrade: hop-by-hop for this message, not forwarded.
	dropNames [][]byte
}

// headerField is one field line of a head: its name and its value without OWS.
type headerField struct {
	name, value []byte
}

// headError is why a request head was refused: the status answered, the reason label of
// sluice_router_client_errors_total, and a short message for the response body.
type headError struct {
	status int
	reason string
	msg    string
}

func (e *headError) Error() string { return e.msg }

// Reasons a request is refused or abandoned because of the client
// (sluice_router_client_errors_total{reason}).
const (
	reasonBadRequestLine   = "bad_request_line"
	reasonBadVersion       = "bad_version"
	reasonBadField         = "bad_header"
	reasonBadHost          = "bad_host"
	reasonBadLength        = "bad_content_length"
	reasonConflict         = "conflicting_framing"
	reasonTransferEncoding = "unsupported_transfer_encoding"
	reasonExpect           = "expectation_failed"
	reasonMethod           = "method_not_allowed"
	reasonHeadTooLarge     = "header_too_large"
	reasonHeadTimeout      = "header_timeout"
	reasonBodyTimeout      = "body_timeout"
	reasonBodyIncomplete   = "body_incomplete"
	reasonBadBody          = "bad_body"
)

var (
	errRequestLine   = &headError{http.StatusBadRequest, reasonBadRequestLine, "malformed request line"}
	errMethod        = &headError{http.StatusBadRequest, reasonBadRequestLine, "invalid method"}
	errTarget        = &headError{http.StatusBadRequest, reasonBadRequestLine, "invalid request target"}
	errVersion       = &headError{http.StatusHTTPVersionNotSupported, reasonBadVersion, "unsupported HTTP version"}
	errField         = &headError{http.StatusBadRequest, reasonBadField, "invalid header field"}
	errObsFold       = &headError{http.StatusBadRequest, reasonBadField, "obsolete line folding"}
	errHost          = &headError{http.StatusBadRequest, reasonBadHost, "invalid Host"}
	errNoHost        = &headError{http.StatusBadRequest, reasonBadHost, "missing Host"}
	errTwoHosts      = &headError{http.StatusBadRequest, reasonBadHost, "more than one Host"}
	errLength        = &headError{http.StatusBadRequest, reasonBadLength, "invalid Content-Length"}
	errTwoLengths    = &headError{http.StatusBadRequest, reasonBadLength, "more than one Content-Length"}
	errFraming       = &headError{http.StatusBadRequest, reasonConflict, "both Content-Length and Transfer-Encoding"}
	errTE10          = &headError{http.StatusBadRequest, reasonConflict, "Transfer-Encoding in an HTTP/1.0 request"}
	errTE            = &headError{http.StatusNotImplemented, reasonTransferEncoding, "unsupported transfer encoding"}
	errExpect        = &headError{http.StatusExpectationFailed, reasonExpect, "unsupported expectation"}
	errConnect       = &headError{http.StatusMethodNotAllowed, reasonMethod, "CONNECT is not supported"}
	errHeadTooLarge  = &headError{http.StatusRequestHeaderFieldsTooLarge, reasonHeadTooLarge, "request header fields too large"}
	errHeadTimedOut  = &headError{http.StatusRequestTimeout, reasonHeadTimeout, "request header not received in time"}
	errBodyTimedOut  = &headError{http.StatusRequestTimeout, reasonBodyTimeout, "request body not received in time"}
	errBodyShort     = &headError{http.StatusBadRequest, reasonBodyIncomplete, "request body incomplete"}
	errBodyMalformed = &headError{http.StatusBadRequest, reasonBadBody, "malformed request body"}
)

// readHead reads one head, up to and including its empty line, into dst[:0]. Empty
// lines before the first line are skipped (RFC 9112 §2.2), up to max bytes of them. It
// returns errHeadTooLarge when the head exceeds max bytes, or the reader's error; the
// head read so far is returned with it (empty when the stream ended between heads).
func readHead(br *bufio.Reader, dst []byte, max int) ([]byte, error) {
	dst = dst[:0]
	skipped := 0
	for {
		line, err := readLine(br, &dst, max-skipped)
		if err != nil {
			return dst, err
		}
		if line == 0 && len(dst) == 0 {
			if skipped += 2; skipped > max {
				return dst, errHeadTooLarge
			}
			continue // an empty line before the request line
		}
		if line == 0 {
			return dst, nil
		}
	}
}

// readLine appends one line (with its LF) to *dst and returns the length of its content
// (without CR LF or LF).
func readLine(br *bufio.Reader, dst *[]byte, max int) (int, error) {
	start := len(*dst)
	for {
		b, err := br.ReadSlice('\n')
		if len(*dst)+len(b) > max {
			return len(*dst) - start + len(b), errHeadTooLarge
		}
		*dst = append(*dst, b...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return len(*dst) - start, err
		}
	}
	n := len(*dst) - start - 1
	if n > 0 && (*dst)[start+n-1] == '\r' {
		n--
	}
	if n == 0 && start == 0 {
		*dst = (*dst)[:0] // drop a leading empty line
	}
	return n, nil
}

// nextLine splits the first line off b: its content (without CR LF or LF) and the rest.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

// parseHead checks head (as readHead returned it) and fills h. On error h is undefined.
func parseHead(head []byte, h *reqHead) *headError {
	fields, dropNames := h.fields[:0], h.dropNames[:0]
	*h = reqHead{length: -1, fields: fields, dropNames: dropNames}
	line, rest := nextLine(head)
	if err := h.parseRequestLine(line); err != nil {
		return err
	}
	var upgradeVal []byte
	upgrades, connUpgrade, keepAlive, te := 0, false, false, false
	for {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return errField
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !validFieldValue(value) {
			return errField
		}
		switch {
		case equalFold(name, "Host"):
			if h.hostField {
				return errTwoHosts
			}
			h.hostField = true
			if !validHost(value) {
				return errHost
			}
			if !h.absolute {
				h.host = value
			}
		case equalFold(name, "Content-Length"):
			if h.length >= 0 {
				return errTwoLengths
			}
			n, ok := parseLength(value)
			if !ok {
				return errLength
			}
			h.length = n
		case equalFold(name, "Transfer-Encoding"):
			if te || !equalFold(value, "chunked") {
				return errTE
			}
			te = true
		case equalFold(name, "Connection"):
			ok := forEachToken(value, func(tok []byte) {
				switch {
				case equalFold(tok, "close"):
					h.close = true
				case equalFold(tok, "keep-alive"):
					keepAlive = true
				case equalFold(tok, "upgrade"):
					connUpgrade = true
				default:
					h.dropNames = append(h.dropNames, tok)
				}
			})
			if !ok {
				return errField
			}
		case equalFold(name, "Upgrade"):
			upgrades++
			upgradeVal = value
		case equalFold(name, "Expect"):
			switch {
			case equalFold(value, "100-continue"):
				h.expect = true
			case len(value) > 0: // an empty one means nothing, as in net/http
				return errExpect
			}
		}
		h.fields = append(h.fields, headerField{name: name, value: value})
	}
	if h.minor == '1' && !h.hostField {
		return errNoHost
	}
	if te {
		if h.minor == '0' {
			return errTE10
		}
		if h.length >= 0 {
			return errFraming
		}
		h.chunked = true
	}
	if h.minor == '0' && !keepAlive {
		h.close = true
	}
	h.upgrade = upgrades > 0
	h.websocket = upgrades == 1 && connUpgrade && h.minor == '1' && equalFold(upgradeVal, "websocket")
	return nil
}

func (h *reqHead) parseRequestLine(line []byte) *headError {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errRequestLine
	}
	h.method = line[:sp]
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errRequestLine
	}
	h.target, line = line[:sp], line[sp+1:]
	if !isToken(h.method) {
		return errMethod
	}
	switch string(line) {
	case "HTTP/1.1":
		h.minor = '1'
	case "HTTP/1.0":
		h.minor = '0'
	default:
		if len(line) == 8 && string(line[:5]) == "HTTP/" && isDigit(line[5]) && line[6] == '.' && isDigit(line[7]) {
			return errVersion
		}
		return errRequestLine
	}
	if string(h.method) == "CONNECT" {
		return errConnect
	}
	t := h.target
	for _, c := range t {
		if c <= ' ' || c == 0x7f || c == '#' {
			return errTarget
		}
	}
	switch {
	case t[0] == '/':
		if !validPath(t) {
			return errTarget
		}
	case len(t) == 1 && t[0] == '*':
		if string(h.method) != "OPTIONS" {
			return errTarget
		}
	default:
		authority, path, ok := splitAbsolute(t)
		if !ok || len(authority) == 0 || bytes.IndexByte(authority, '@') >= 0 || !validHost(authority) || !validPath(path) {
			return errTarget
		}
		h.absolute = true
		h.host = authority
	}
	return nil
}

// splitAbsolute splits an absolute-form http(s) target into authority and the rest.
func splitAbsolute(t []byte) (authority, rest []byte, ok bool) {
	var n int
	switch {
	case len(t) >= 7 && equalFold(t[:7], "http://"):
		n = 7
	case len(t) >= 8 && equalFold(t[:8], "https://"):
		n = 8
	default:
		return nil, nil, false
	}
	t = t[n:]
	end := len(t)
	if i := bytes.IndexAny(t, "/?"); i >= 0 {
		end = i
	}
	return t[:end], t[end:], true
}

// validPath checks the percent-encoding of a target's path (the part before "?"), as
// net/http does.
func validPath(t []byte) bool {
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		t = t[:i]
	}
	for i := 0; i < len(t); i++ {
		if t[i] == '%' {
			if i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// validHost checks uri-host [":" port] (RFC 3986 §3.2.2): an IP literal in brackets, or
// a reg-name / IPv4 address of unreserved and sub-delims characters (no pct-encoding),
// and a port of at most 5 digits. An empty value is allowed (RFC 9110 §7.2), as net/http
// allows it.
func validHost(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	var port []byte
	if b[0] == '[' {
		end := bytes.IndexByte(b, ']')
		if end < 3 {
			return false
		}
		for _, c := range b[1:end] {
			if !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		rest := b[end+1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
		}
	} else {
		host := b
		if i := bytes.IndexByte(b, ':'); i >= 0 {
			host, port = b[:i], b[i+1:]
		}
		if len(host) == 0 {
			return false
		}
		for _, c := range host {
			switch {
			case isAlnum(c), c == '-', c == '.', c == '_', c == '~':
			case c == '!', c == '$', c == '&', c == '\'', c == '(', c == ')', c == '*', c == '+', c == ',', c == ';', c == '=':
			default: // also "%": pct-encoded hosts are legal but unused, and libraries read them differently
				return false
			}
		}
	}
	if len(port) > 5 {
		return false
	}
	for _, c := range port {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length value: 1*DIGIT, at most 18 digits.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// forEachToken calls f for each non-empty element of a comma-separated list of tokens;
// it returns false if an element is not a token.
func forEachToken(v []byte, f func(tok []byte)) bool {
	for len(v) > 0 {
		var t []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			t, v = v, nil
		}
		t = trimOWS(t)
		if len(t) == 0 {
			continue
		}
		if !isToken(t) {
			return false
		}
		f(t)
	}
	return true
}

// tchar: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
var tchar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = isAlnum(byte(c))
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// validFieldValue: VCHAR, obs-text, SP and HTAB only (no CR, LF, NUL or other controls).
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'f' }
func isAlnum(c byte) bool { return isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'z' }

// equalFold reports whether b equals s ignoring ASCII case.
func equalFold[B ~string | ~[]byte](b B, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if c|0x20 != d|0x20 || c|0x20 < 'a' || c|0x20 > 'z' {
			return false
		}
	}
	return true
}

// equalFoldName reports whether header name b equals s ignoring ASCII case and treating
// "_" and "-" as the same (X_Internal_Test is X-Internal-Test to many backends).
func equalFoldName[B ~string | ~[]byte](b B, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if c == '_' {
			c = '-'
		}
		if d == '_' {
			d = '-'
		}
		if c == d {
			continue
		}
		if c|0x20 != d|0x20 || c|0x20 < 'a' || c|0x20 > 'z' {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
