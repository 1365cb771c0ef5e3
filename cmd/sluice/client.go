package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-mesh/sluice/admin"
	"github.com/sluice-mesh/sluice/analyzer"
)

// defaultAdmin is where the CLI finds the admin API when neither --admin nor
// SLUICE_ADMIN says otherwise.
const defaultAdmin = "127.0.0.1:9900"

// clientFlags are the flags every command that talks to the admin API takes.
type clientFlags struct {
	admin     string
	tokenFile string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("SLUICE_ADMIN")
	if def == "" {
		def = defaultAdmin
	}
	fs.StringVar(&c.admin, "admin", def, "admin API address, host:port or URL (env SLUICE_ADMIN)")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the admin bearer token (needed when the server has one)")
}

// client builds an admin API client from the flags.
func (c *clientFlags) client() (*adminClient, error) {
	base := strings.TrimRight(c.admin, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--admin %q: want host:port or http(s)://host:port", c.admin)
	}
	ac := &adminClient{base: base, addr: c.admin, hc: &http.Client{Timeout: 15 * time.Second}}
	if c.tokenFile != "" {
		t, err := admin.LoadToken(c.tokenFile)
		if err != nil {
			return nil, err
		}
		ac.token = t
	}
	return ac, nil
}

// adminClient calls Sluice's admin API.
type adminClient struct {
	base  string // http://host:port
	addr  string // as the user gave it, for messages
	token string
	hc    *http.Client
}

// apiError is a non-2xx answer from the admin API.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string {
	switch e.Status {
	case http.StatusUnauthorized:
		return "unauthorized: " + e.Message
	case http.StatusNotFound:
		return e.Message
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("cannot reach the admin API at %s (connection refused): is `sluice serve` running at %s?", c.addr, c.addr)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("cannot reach the admin API at %s: %v", c.addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin API at %s: %v", c.addr, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
			msg += " — pass --token-file FILE"
		}
		return &apiError{Status: resp.StatusCode, Message: msg}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("admin API at %s answered something that is not Sluice's JSON: %v", c.addr, err)
		}
	}
	return nil
}

// list returns every rollout's status.
func (c *adminClient) list(ctx context.Context) ([]analyzer.RolloutStatus, error) {
	var out []analyzer.RolloutStatus
	err := c.do(ctx, http.MethodGet, "/api/v1/rollouts", nil, &out)
	return out, err
}

// get returns one rollout's status.
func (c *adminClient) get(ctx context.Context, name string) (analyzer.RolloutStatus, error) {
	var out analyzer.RolloutStatus
	err := c.do(ctx, http.MethodGet, "/api/v1/rollouts/"+url.PathEscape(name), nil, &out)
	return out, err
}

// action POSTs start, promote, abort or retry and returns the rollout's status after it.
func (c *adminClient) action(ctx context.Context, name, action string, full bool) (analyzer.RolloutStatus, error) {
	var out analyzer.RolloutStatus
	var body any = struct{}{}
	if full {
		body = map[string]bool{"full": true}
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/rollouts/"+url.PathEscape(name)+"/"+action, body, &out)
	return out, err
}

// parseInterspersed parses flags that may come before or after positional arguments
// (`sluice promote NAME --full`). It returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, int, bool) {
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return nil, code, false
	}
	var pos []string
	rest := fs.Args()
	for len(rest) > 0 {
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			return nil, exitUsage, false
		}
		rest = fs.Args()
	}
	return pos, exitOK, true
}

// actionCommand builds the `sluice start|promote|abort|retry NAME` command.
func actionCommand(name, verb, summary string, withFull bool) *command {
	usage := "NAME [--admin ADDR] [--token-file FILE]"
	if withFull {
		usage = "NAME [--full] [--admin ADDR] [--token-file FILE]"
	}
	c := &command{name: name, usage: usage, summary: summary}
	c.run = func(args []string, stdout, stderr io.Writer) int {
		fs := newFlagSet(c, stderr)
		var cf clientFlags
		cf.register(fs)
		var full bool
		if withFull {
			fs.BoolVar(&full, "full", false, "skip the remaining steps, analyses and pauses: 100% to the canary now")
		}
		pos, code, ok := parseInterspersed(fs, args, stdout)
		if !ok {
			return code
		}
		if len(pos) != 1 {
			fmt.Fprintf(stderr, "sluice %s: want exactly one rollout name, got %d arguments\n", name, len(pos))
			fs.Usage()
			return exitUsage
		}
		ac, err := cf.client()
		if err != nil {
			fmt.Fprintf(stderr, "sluice %s: %v\n", name, err)
			return exitUsage
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		st, err := ac.action(ctx, pos[0], name, full)
		if err != nil {
			fmt.Fprintf(stderr, "sluice %s %s: %v\n", name, pos[0], err)
			return exitInvalid
		}
		how := verb
		if full {
			how += " fully"
		}
		fmt.Fprintf(stdout, "%s %s: %s, step %d/%d, canary weight %d%% (applied %d%%)\n",
			st.Name, how, st.Phase, st.Step, st.Steps, st.SetWeight, st.ActualWeight)
		if st.Message != "" {
			fmt.Fprintf(stdout, "  %s\n", st.Message)
		}
		return exitOK
	}
	return c
}
