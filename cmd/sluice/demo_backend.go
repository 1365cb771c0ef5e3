package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluice-mesh/sluice/internal/demobackend"
)

func init() {
	c := &command{
		name:    "demo-backend",
		usage:   "[--listen ADDR] [--name NAME] [--error-rate F] [--latency D] [--jitter D] [--grpc ADDR]",
		summary: "Run a demo service that fails and lags on demand, with request metrics",
	}
	c.run = func(args []string, stdout, stderr io.Writer) int {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runDemoBackend(ctx, c, args, stdout, stderr)
	}
	register(c)
}

// runDemoBackend runs `sluice demo-backend` until ctx is done (SIGINT or SIGTERM from
// main), then shuts down gracefully and returns exitOK. Once listening it prints one line
// per server to stdout: "demo-backend NAME http ADDR" and "demo-backend NAME grpc ADDR".
func runDemoBackend(ctx context.Context, c *command, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(c, stderr)
	var (
		lf               logFlags
		opts             demobackend.Options
		listen, grpcAddr string
	)
	fs.StringVar(&listen, "listen", "127.0.0.1:9001", "HTTP address to serve (/, /healthz and /health, /metrics); port 0 picks a free one")
	fs.StringVar(&opts.Name, "name", "demo", "backend name, in every answer and the X-Sluice-Backend header")
	fs.Float64Var(&opts.ErrorRate, "error-rate", 0, "fraction of requests (0..1) answered with 500 (gRPC: INTERNAL)")
	fs.DurationVar(&opts.Latency, "latency", 40*time.Millisecond, "time each request takes")
	fs.DurationVar(&opts.Jitter, "jitter", 0, "spread latency uniformly by ± this much")
	fs.Uint64Var(&opts.Seed, "seed", 0, "random seed for failures and jitter (0: random)")
	fs.StringVar(&grpcAddr, "grpc", "", "also serve gRPC (grpc.testing.TestService and grpc.health.v1.Health) on this address")
	lf.register(fs)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice demo-backend: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	log, err := lf.build(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sluice demo-backend: %v\n", err)
		return exitUsage
	}
	defer func() { _ = log.Sync() }()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b, err := demobackend.New(reg, reg, opts)
	if err != nil {
		fmt.Fprintf(stderr, "sluice demo-backend: %v\n", err)
		return exitUsage
	}
	hl, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintf(stderr, "sluice demo-backend: --listen: %v\n", err)
		return exitInvalid
	}
	var gl net.Listener
	if grpcAddr != "" {
		if gl, err = net.Listen("tcp", grpcAddr); err != nil {
			hl.Close()
			fmt.Fprintf(stderr, "sluice demo-backend: --grpc: %v\n", err)
			return exitInvalid
		}
	}
	fmt.Fprintf(stdout, "demo-backend %s http %s\n", opts.Name, hl.Addr())
	if gl != nil {
		fmt.Fprintf(stdout, "demo-backend %s grpc %s\n", opts.Name, gl.Addr())
	}
	if err := b.Serve(ctx, hl, gl, log); err != nil {
		fmt.Fprintf(stderr, "sluice demo-backend: %v\n", err)
		return exitInvalid
	}
	return exitOK
}
