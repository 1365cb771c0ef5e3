package deploy

import (
	"bufio"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dockerfile is the part of the Dockerfile the tests look at.
type dockerfile struct {
	stages   []stage
	args     map[string]string // ARG defaults of the build stage
	buildRun string            // the RUN line holding `go build`, continuations joined
}

type stage struct {
	from, name string
	lines      []string // instructions after FROM, continuations joined
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	var df dockerfile
	df.args = map[string]string{}
	var logical []string
	cur := ""
	for _, l := range strings.Split(string(readFile(t, "Dockerfile")), "\n") {
		trimmed := strings.TrimSpace(l)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		logical = append(logical, cur+trimmed)
		cur = ""
	}
	for _, l := range logical {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			f := strings.Fields(rest)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			df.stages = append(df.stages, s)
			continue
		}
		if len(df.stages) == 0 {
			continue // ARG before FROM
		}
		st := &df.stages[len(df.stages)-1]
		st.lines = append(st.lines, l)
		switch strings.ToUpper(instr) {
		case "ARG":
			if k, v, ok := strings.Cut(strings.TrimSpace(rest), "="); ok {
				df.args[k] = v
			}
		case "RUN":
			if strings.Contains(rest, "go build") {
				df.buildRun = strings.TrimSpace(rest)
			}
		}
	}
	return df
}

// shellWords splits s like a POSIX shell would for the simple commands used in the
// Dockerfile: whitespace, single and double quotes, backslash escapes. It refuses
// operators it does not model (&&, ;, |, $(…)).
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord, sq, dq := false, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case sq:
			if c == '\'' {
				sq = false
			} else {
				w.WriteByte(c)
			}
		case dq:
			switch c {
			case '"':
				dq = false
			case '\\':
				if i+1 < len(s) {
					i++
					w.WriteByte(s[i])
				}
			default:
				w.WriteByte(c)
			}
		case c == '\'':
			sq, inWord = true, true
		case c == '"':
			dq, inWord = true, true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '&' || c == ';' || c == '|' || c == '`' || (c == '$' && i+1 < len(s) && s[i+1] == '('):
			return nil, fmt.Errorf("shell operator %q in %q: keep the go build RUN a single simple command", c, s)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if sq || dq {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

var argRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// buildCommand turns the Dockerfile's go build RUN into environment assignments and the
// go arguments, with ARG defaults expanded and -o redirected to out.
func buildCommand(t *testing.T, df dockerfile, out string) (env, args []string) {
	t.Helper()
	if df.buildRun == "" {
		t.Fatal("Dockerfile has no RUN ... go build line")
	}
	words, err := shellWords(df.buildRun)
	if err != nil {
		t.Fatal(err)
	}
	for i := range words {
		words[i] = argRef.ReplaceAllStringFunc(words[i], func(m string) string {
			k := argRef.FindStringSubmatch(m)
			name := k[1] + k[2]
			v, ok := df.args[name]
			if !ok {
				t.Fatalf("Dockerfile go build uses $%s, which no ARG with a default defines", name)
			}
			return v
		})
	}
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env = append(env, words[0])
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("RUN %q is not [ENV=...] go build ...", df.buildRun)
	}
	args = words[1:]
	foundO := false
	for i := 0; i < len(args); i++ {
		if args[i] == "-o" && i+1 < len(args) {
			args[i+1] = out
			foundO = true
		} else if strings.HasPrefix(args[i], "-o=") {
			args[i] = "-o=" + out
			foundO = true
		}
	}
	if !foundO {
		t.Fatal("go build in the Dockerfile has no -o")
	}
	return env, args
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// sluiceBinary builds Sluice once with the Dockerfile's own build command and returns it.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		// Stays the error if a check below stops the test (t.Fatal) before the build ends.
		binErr = fmt.Errorf("the Dockerfile's build command could not be run (see the first test that tried)")
		df := parseDockerfile(t)
		var err error
		if binDir, err = os.MkdirTemp("", "sluice-docker-build-"); err != nil {
			binErr = err
			return
		}
		out := filepath.Join(binDir, "sluice")
		env, args := buildCommand(t, df, out)
		goBin, err := exec.LookPath("go")
		if err != nil {
			binErr = err
			return
		}
		cmd := exec.Command(goBin, args...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), env...)
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("the Dockerfile's build failed: %s %s: %v\n%s", strings.Join(env, " "), strings.Join(args, " "), err, b)
			return
		}
		t.Logf("built with the Dockerfile's command in %v: %s go %s", time.Since(start).Round(time.Millisecond), strings.Join(env, " "), strings.Join(args, " "))
		binPath, binErr = out, nil
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestDockerfileShape(t *testing.T) {
	df := parseDockerfile(t)
	if len(df.stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(df.stages))
	}
	build, final := df.stages[0], df.stages[len(df.stages)-1]
	if !strings.HasPrefix(build.from, "golang:") || build.name == "" {
		t.Errorf("first stage %q AS %q, want a named golang:... stage", build.from, build.name)
	}
	// The builder's Go must be at least go.mod's go directive.
	gomod := string(readFile(t, "go.mod"))
	want := regexp.MustCompile(`(?m)^go (\S+)`).FindStringSubmatch(gomod)[1]
	have := regexp.MustCompile(`^golang:(\d+\.\d+(?:\.\d+)?)`).FindStringSubmatch(build.from)
	if have == nil || versionLess(have[1], want) {
		t.Errorf("builder image %s is older than go.mod's go %s", build.from, want)
	}
	if !(strings.HasPrefix(final.from, "gcr.io/distroless/static") && strings.Contains(final.from, "nonroot")) && final.from != "scratch" {
		t.Errorf("final stage FROM %s, want distroless static nonroot or scratch", final.from)
	}
	var user string
	copied := false
	for _, l := range final.lines {
		f := strings.Fields(l)
		switch strings.ToUpper(f[0]) {
		case "USER":
			user = f[1]
		case "COPY":
			if strings.HasPrefix(f[1], "--from="+build.name) {
				copied = true
			}
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid != "65532" {
		t.Errorf("final stage USER %q, want 65532 (non-root)", user)
	}
	if !copied {
		t.Errorf("final stage does not COPY --from=%s", build.name)
	}
	env, args := buildCommand(t, df, "/x")
	if !contains(env, "CGO_ENABLED=0") {
		t.Errorf("go build env %v lacks CGO_ENABLED=0", env)
	}
	if !contains(args, "-trimpath") || args[len(args)-1] != "./cmd/sluice" {
		t.Errorf("go build args %v: want -trimpath and ./cmd/sluice", args)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func TestShellWords(t *testing.T) {
	got, err := shellWords(`CGO_ENABLED=0 go build -ldflags="-s -w -X 'main.v=${V}'" -o /out/x ./cmd/x`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CGO_ENABLED=0", "go", "build", "-ldflags=-s -w -X 'main.v=${V}'", "-o", "/out/x", "./cmd/x"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if _, err := shellWords("go build && rm -rf /"); err == nil {
		t.Error("accepted &&")
	}
}

// TestDockerfileBuildIsStatic runs the Dockerfile's go build command and checks that the
// binary needs no dynamic loader or shared library (so it runs on distroless static or
// scratch) and carries the build settings the Dockerfile asks for.
func TestDockerfileBuildIsStatic(t *testing.T) {
	bin := sluiceBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has a PT_INTERP program header: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v (%v)", libs, err)
	}
	if out, err := exec.Command("file", bin).Output(); err == nil {
		if !strings.Contains(string(out), "statically linked") {
			t.Errorf("file(1) says: %s", out)
		}
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings CGO_ENABLED=%q -trimpath=%q", settings["CGO_ENABLED"], settings["-trimpath"])
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "sluice "+parseDockerfile(t).args["VERSION"]+" ") {
		t.Errorf("sluice version: %q, %v (want the ARG VERSION default stamped by -X main.version)", out, err)
	}
}

// TestBinaryDemoBackendStopsOnSignals runs the built binary's demo-backend and stops it with
// real SIGTERM and SIGINT: it must exit 0 and leave nothing listening.
func TestBinaryDemoBackendStopsOnSignals(t *testing.T) {
	bin := sluiceBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, "demo-backend", "--listen", "127.0.0.1:0", "--name", "sig", "--latency", "1ms")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = io.Discard
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			t.Cleanup(func() {
				select {
				case <-exited:
				default:
					_ = cmd.Process.Kill()
				}
			})
			lines := bufio.NewScanner(stdout)
			addr := ""
			if lines.Scan() {
				if f := strings.Fields(lines.Text()); len(f) == 4 && f[2] == "http" {
					addr = f[3]
				}
			}
			go func() {
				for lines.Scan() {
				}
				exited <- cmd.Wait()
			}()
			if addr == "" {
				t.Fatalf("no address line from demo-backend")
			}
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.Header.Get("X-Sluice-Backend") != "sig" {
				t.Errorf("X-Sluice-Backend = %q", resp.Header.Get("X-Sluice-Backend"))
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				exited <- err // for the cleanup
				if err != nil {
					t.Errorf("exit after %v: %v, want status 0", sig, err)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("still running 15s after %v", sig)
			}
			if _, err := http.Get("http://" + addr + "/health"); err == nil {
				t.Error("still listening after exit")
			}
		})
	}
}
