package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/admin"
	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/analyzer/embedded"
	"github.com/sluice-mesh/sluice/config"
	"github.com/sluice-mesh/sluice/discovery"
	"github.com/sluice-mesh/sluice/ha"
	"github.com/sluice-mesh/sluice/internal/statedir"
	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/router"
)

func init() {
	c := &command{
		name:    "serve",
		usage:   "-f FILE [-f FILE...] [--log-format console|json]",
		summary: "Run what the files declare: router, xDS server, rollouts, admin API (SIGHUP or a file change reloads)",
	}
	c.run = func(args []string, stdout, stderr io.Writer) int {
		fs := newFlagSet(c, stderr)
		var files stringList
		fs.Var(&files, "f", "configuration file (repeatable, or comma-separated)")
		var lf logFlags
		lf.register(fs)
		if code, ok := parseFlags(fs, args, stdout); !ok {
			return code
		}
		files = append(files, fs.Args()...)
		if len(files) == 0 {
			fmt.Fprintln(stderr, "sluice serve: no configuration: pass -f FILE")
			fs.Usage()
			return exitUsage
		}
		log, err := lf.build(stderr)
		if err != nil {
			fmt.Fprintf(stderr, "sluice serve: %v\n", err)
			return exitUsage
		}
		defer func() { _ = log.Sync() }()
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = runServe(ctx, serveOptions{Files: files, Logger: log, Stderr: stderr})
		var inv *invalidConfigError
		switch {
		case errors.As(err, &inv):
			return exitInvalid
		case err != nil:
			fmt.Fprintf(stderr, "sluice serve: %v\n", err)
			return exitInvalid
		}
		return exitOK
	}
	register(c)
}

// stickyKeyFile is the file in the state directory holding the sticky-cookie keys.
const stickyKeyFile = "sticky-cookie.keys"

// usesStickySessions reports whether any Listener of cfg pins clients with a cookie.
func usesStickySessions(cfg *model.Config) bool {
	for i := range cfg.Listeners {
		if cfg.Listeners[i].StickySessions != nil {
			return true
		}
	}
	return false
}

// serveOptions configures runServe.
type serveOptions struct {
	Files  []string
	Logger *zap.Logger
	// Stderr receives the diagnostics of an invalid configuration at start.
	Stderr io.Writer
	// PollEvery is how often the files' modification times are checked (default 1s).
	PollEvery time.Duration
	// Started, when set, is called once everything listens, with the running server.
	Started func(*runningServer)
}

// xdsServer is the xDS control plane as `sluice serve` uses it (*xds.Server).
type xdsServer interface {
	analyzer.DataPlane
	// ClusterHealth: the endpoints it serves for a cluster (a step waits for a healthy
	// canary endpoint in every data plane).
	analyzer.HealthReporter
	// NodesHandler serves GET /api/v1/xds/nodes.
	NodesHandler() http.Handler
	// Start binds the xDS address and serves until Stop.
	Start(ctx context.Context) error
	Stop()
}

// newXDS builds, without binding it yet, the xDS server for x (serve_xds.go sets it).
var newXDS func(x *model.XDS, log *zap.Logger, reg prometheus.Registerer) (xdsServer, error)

// invalidConfigError: the configuration did not validate; its diagnostics were printed.
type invalidConfigError struct{ n int }

func (e *invalidConfigError) Error() string {
	return fmt.Sprintf("invalid configuration (%d problems)", e.n)
}

// runningServer is what a started `sluice serve` exposes to the demo and to tests.
type runningServer struct {
	AdminAddr  string
	Controller *analyzer.Controller
	Router     *router.Router // nil without listeners
	Registry   prometheus.Gatherer
	// Reload reloads the configuration files now, as SIGHUP does.
	Reload func() error
}

// loadConfig loads files and reports whether they validated; diagnostics go to log.
func loadConfig(files []string) (*model.Config, config.Diagnostics, error) {
	cfg, diags := config.Load(files...)
	if diags.HasErrors() {
		return nil, diags, &invalidConfigError{n: len(diags.Errors())}
	}
	return cfg, diags, nil
}

// runServe runs Sluice until ctx ends, then shuts down gracefully (the router drains).
//
// It binds first and decides afterwards: it takes the stateDir's lock, binds the admin
// address, the xDS address and every router listener (applying the routing the stored
// states ask for), and only then creates the rollout controller, which is the first to write
// rollout state. When any of these fails it returns the reason (a *bindError for an
// address, a *statedir.InUseError for a stateDir owned by another process) with nothing
// written.
func runServe(ctx context.Context, o serveOptions) error {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if o.PollEvery <= 0 {
		o.PollEvery = time.Second
	}
	stamps := stampConfig(o.Files)
	cfg, diags, err := loadConfig(o.Files)
	if err != nil {
		if o.Stderr != nil {
			for _, d := range diags {
				fmt.Fprintln(o.Stderr, d.String())
			}
		}
		return err
	}
	for _, d := range diags {
		log.Warn("config", zap.String("diagnostic", d.String()))
	}

	// One owner per stateDir, for the life of the process. With store.etcd, state lives in
	// etcd (serve_ha.go) and the stateDir is not used.
	stateDir := cfg.ControlPlane.StateDir
	replicated := cfg.ControlPlane.Etcd != nil
	if replicated {
		stateDir = ""
	}
	if stateDir != "" {
		lock, err := statedir.Acquire(stateDir)
		if err != nil {
			return err
		}
		defer func() { _ = lock.Release() }()
	}
	// What the router serves until the controller's first decision; reading the stored
	// states now also stops a corrupt state file before anything is bound. Replicated,
	// the states are read from etcd once the admin address is bound (serve_ha.go).
	var initial *model.Snapshot
	if !replicated {
		if initial, err = initialSnapshot(cfg, stateDir, time.Now()); err != nil {
			return err
		}
	}

	// appReg holds Sluice's own series and routerReg the router's: the embedded store
	// reads both for analysis. /metrics serves them together with the Go runtime and
	// process collectors.
	appReg, routerReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	runtimeReg := prometheus.NewRegistry()
	runtimeReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gatherer := prometheus.Gatherers{appReg, routerReg, runtimeReg}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // runs last: after every server below has stopped

	// The admin address. The rollout endpoints answer 503 for the few milliseconds until
	// the controller exists; /readyz says why.
	var token string
	if f := cfg.ControlPlane.Admin.TokenFile; f != "" {
		if token, err = admin.LoadToken(f); err != nil {
			return err
		}
	}
	var xs xdsServer
	var xdsNodes http.Handler
	if x := cfg.ControlPlane.XDS; x != nil {
		if newXDS == nil {
			return errors.New("xds: the configuration asks for an xDS server, and this build has none")
		}
		if xs, err = newXDS(x, log.Named("xds"), appReg); err != nil {
			return fmt.Errorf("xds: %w", err)
		}
		xdsNodes = xs.NodesHandler()
	}
	var ctrlReady atomic.Bool
	adm, err := admin.New(admin.Options{Address: cfg.ControlPlane.Admin.Address, Token: token,
		Gatherer: gatherer, Registerer: appReg, Logger: log.Named("admin"), Nodes: xdsNodes,
		Ready: []admin.ReadyFunc{func() error {
			if !ctrlReady.Load() {
				return errors.New("starting: the rollout controller is not running yet")
			}
			return nil
		}}})
	if err != nil {
		return err
	}
	if err := adm.Start(); err != nil {
		if be := asBindError("the admin address", cfg.ControlPlane.Admin.Address, err); be != nil {
			return be
		}
		return err
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = adm.Shutdown(sctx)
	}()

	// Replicated: read the states from etcd before any data plane is bound.
	var node *replicaNode
	if replicated {
		if node, err = openReplica(ctx, cfg, adm.Addr(), log.Named("ha"), appReg); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting for etcd
			}
			return err
		}
		defer node.stop()
		initial = node.initialSnapshot(cfg)
	}

	// The xDS address.
	if xs != nil {
		if err := xs.Start(ctx); err != nil {
			if be := asBindError("the xDS address", cfg.ControlPlane.XDS.Address, err); be != nil {
				return be
			}
			return fmt.Errorf("xds: %w", err)
		}
		defer xs.Stop()
	}

	// Every router listener, bound by applying the routing the stored states ask for, with
	// the endpoints discovery found (waited for, up to resolveWait). Last: when something
	// else cannot be bound, no client request has reached Sluice yet.
	var rt *router.Router
	var planes []discovery.DataPlane // what the controller's snapshots go to, through ov
	var health []analyzer.HealthSource
	if xs != nil {
		planes = append(planes, xs)
		health = append(health, analyzer.HealthSource{Plane: "xds", Reporter: xs})
	}
	if len(cfg.Listeners) > 0 {
		// Sticky-session cookies are signed with keys kept in the state directory (alone) or
		// in etcd (replicated: every router must accept every other's cookies), so they
		// survive restarts (see router.LoadStickyKeys for rotation). The file is created
		// only when a Listener uses sticky sessions.
		var keys [][]byte
		if usesStickySessions(cfg) {
			if keys, err = stickyKeys(cfg, node); err != nil {
				return fmt.Errorf("router: %w", err)
			}
		}
		if rt, err = router.New(router.Options{Logger: log.Named("router"), Registerer: routerReg, StickyKeys: keys}); err != nil {
			return fmt.Errorf("router: %w", err)
		}
		defer func() {
			sctx, c := context.WithTimeout(context.Background(), 15*time.Second)
			defer c()
			if err := rt.Shutdown(sctx); err != nil {
				log.Warn("router shutdown", zap.Error(err))
			}
		}()
		planes = append([]discovery.DataPlane{rt}, planes...)
		health = append([]analyzer.HealthSource{{Plane: "router", Reporter: rt}}, health...)
	}
	// Endpoint discovery: the Overlay puts what the Manager finds into every snapshot the
	// controller publishes, and applies the last one again when a set changes.
	dlog := log.Named("discovery")
	ov := discovery.NewOverlay(dlog, planes...)
	mgr := discovery.NewManager(discovery.Options{Logger: dlog, Registerer: appReg, OnChange: ov.OnChange})
	defer mgr.Close() // before the data planes shut down: no change reaches them after
	mgr.Update(cfg)
	waitResolved(ctx, mgr, dlog)
	if rt != nil {
		if err := rt.Apply(ov.Fill(initial)); err != nil {
			if be := routerBindError(cfg, err); be != nil {
				return be
			}
			return err
		}
		adm.AddReady(func() error {
			if !rt.Ready() {
				return errors.New("router: not serving (shutting down)")
			}
			return nil
		})
	}

	// Everything is bound: now the controller may decide (and write state).
	// The analysis reads the router's series; replicated, every replica's (serve_ha.go).
	var routerSeries prometheus.Gatherer = routerReg
	var repl analyzer.Replication
	var initialStates map[string]analyzer.StoredState
	if node != nil {
		routerSeries = node.rep.FleetGatherer(routerReg, ha.FleetOptions{Path: admin.RouterMetricsPath, Token: adm.Token})
		repl, initialStates = node.replication(), node.initial
		adm.SetRouterMetrics(routerReg)
		adm.SetReplicas(node.view)
	}
	store, err := embedded.New(embedded.Options{Gatherer: prometheus.Gatherers{appReg, routerSeries}, Logger: log.Named("embedded")})
	if err != nil {
		return fmt.Errorf("embedded metrics: %w", err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); store.Run(ctx) }()

	ctrl, err := analyzer.NewController(cfg, analyzer.Options{Logger: log.Named("analyzer"), Registerer: appReg,
		DataPlanes: []analyzer.DataPlane{ov}, Health: health, Discovery: discoveryReporter{mgr}, StateDir: stateDir, Embedded: store,
		Judge: analyzer.NewJudgeFactory(routerSeries), Replication: repl, InitialStates: initialStates})
	if err != nil {
		return fmt.Errorf("analyzer: %w", err)
	}
	runErr := make(chan error, 1)
	ctrlDone := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); defer close(ctrlDone); runErr <- ctrl.Run(ctx) }()
	// The controller stops before the data planes do: a decision taken while they shut
	// down would be refused and saved as such. Replicated, the replica then resigns
	// (another leads at once) before the router drains.
	if node != nil {
		node.start()
		defer node.stop()
	}
	defer func() { cancel(); <-ctrlDone }()
	adm.SetRollouts(ctrl)
	ctrlReady.Store(true)

	reloader := &reloader{files: o.Files, log: log, ctrl: ctrl, adm: adm, discovery: mgr, node: node,
		adminAddr: cfg.ControlPlane.Admin.Address, stateDir: cfg.ControlPlane.StateDir, etcd: cfg.ControlPlane.Etcd, stamps: stamps}
	if o.Started != nil {
		o.Started(&runningServer{AdminAddr: adm.Addr(), Controller: ctrl, Router: rt, Registry: prometheus.Gatherers{appReg, routerReg},
			Reload: reloader.reload})
	}
	log.Info("sluice serving", zap.Strings("files", o.Files), zap.String("admin", adm.Addr()),
		zap.Int("rollouts", len(cfg.Rollouts)), zap.Int("listeners", len(cfg.Listeners)))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	poll := time.NewTicker(o.PollEvery)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			return nil
		case err := <-runErr:
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("analyzer stopped: %w", err)
			}
			return nil
		case <-hup:
			log.Info("SIGHUP: reloading configuration")
			_ = reloader.reload()
		case <-poll.C:
			if !stampConfig(o.Files).equal(reloader.lastStamps()) {
				log.Info("configuration files changed: reloading")
				_ = reloader.reload()
			}
		}
	}
}

// reloader reloads the configuration; a reload that fails validation keeps the running one.
type reloader struct {
	files     []string
	log       *zap.Logger
	ctrl      *analyzer.Controller
	adm       *admin.Server
	discovery *discovery.Manager // nil in tests
	node      *replicaNode       // replicated: the new config's digest goes to etcd
	adminAddr string
	stateDir  string
	etcd      *model.EtcdStore

	mu     sync.Mutex
	stamps configStamps // of the files as last read
}

func (r *reloader) lastStamps() configStamps {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stamps
}

func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stamps = stampConfig(r.files) // before reading: a write during the read is seen next time
	cfg, diags, err := loadConfig(r.files)
	if err != nil {
		fields := make([]string, 0, len(diags))
		var problems []string
		for _, d := range diags {
			fields = append(fields, d.String())
			if d.Severity == config.SeverityError {
				problems = append(problems, d.String())
			}
		}
		r.log.Error("reload refused: the configuration does not validate; the running configuration stays",
			zap.Strings("diagnostics", fields))
		r.refused(errors.New("the configuration does not validate; the running configuration stays"), problems)
		return err
	}
	if cfg.ControlPlane.Admin.Address != r.adminAddr {
		r.log.Warn("admin address changed: takes effect after a restart",
			zap.String("running", r.adminAddr), zap.String("configured", cfg.ControlPlane.Admin.Address))
	}
	if cfg.ControlPlane.StateDir != r.stateDir {
		r.log.Warn("stateDir changed: takes effect after a restart",
			zap.String("running", r.stateDir), zap.String("configured", cfg.ControlPlane.StateDir))
	}
	if !sameStore(cfg.ControlPlane.Etcd, r.etcd) {
		r.log.Warn("store changed: takes effect after a restart")
	}
	// The token file is read again on every reload, so a rotated token takes effect.
	token := ""
	if f := cfg.ControlPlane.Admin.TokenFile; f != "" {
		if token, err = admin.LoadToken(f); err != nil {
			r.log.Error("reload refused: the running configuration stays", zap.Error(err))
			r.refused(err, nil)
			return err
		}
	}
	if err := r.ctrl.Reload(cfg); err != nil {
		r.log.Error("reload refused by the rollout controller; the running configuration stays", zap.Error(err))
		r.refused(err, nil)
		return err
	}
	if r.node != nil {
		r.node.rep.SetConfigDigest(ha.ConfigDigest(cfg))
	}
	if err := r.adm.SetToken(token); err != nil { // config validation makes this unreachable
		r.log.Error("admin token not changed", zap.Error(err))
	}
	if r.discovery != nil {
		r.discovery.Update(cfg) // sources whose settings did not change keep running
	}
	r.log.Info("configuration reloaded", zap.Int("rollouts", len(cfg.Rollouts)))
	return nil
}

// refused tells status why the last reload was refused (the controller's Reload clears
// it when one succeeds).
func (r *reloader) refused(err error, diagnostics []string) {
	if r.ctrl != nil {
		r.ctrl.SetReloadError(fmt.Errorf("reload refused: %w", err), diagnostics)
	}
}
