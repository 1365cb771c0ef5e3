package demobackend

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// ShutdownTimeout bounds the graceful part of Serve's shutdown; connections still busy
// after it are closed.
const ShutdownTimeout = 10 * time.Second

// Serve serves HTTP on httpLis and, when grpcLis is not nil, gRPC on grpcLis, until ctx is
// done or a server fails. It then stops gracefully: gRPC health turns NOT_SERVING, both
// servers stop accepting and finish in-flight requests within ShutdownTimeout. It returns
// nil after a shutdown caused by ctx, else the first server error. Serve closes both listeners.
func (b *Backend) Serve(ctx context.Context, httpLis, grpcLis net.Listener, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	hs := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() {
		if err := hs.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	var gs *grpc.Server
	if grpcLis != nil {
		gs = grpc.NewServer(b.ServerOptions()...)
		b.RegisterGRPC(gs)
		go func() {
			if err := gs.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- err
			}
		}()
	}
	log.Info("demo backend serving", zap.String("name", b.name), zap.Stringer("http", httpLis.Addr()),
		zap.Float64("errorRate", b.ErrorRate()), zap.Duration("latency", b.latency), zap.Duration("jitter", b.jitter))

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("demo backend shutting down", zap.String("name", b.name))
	case serveErr = <-errc:
		log.Error("demo backend server failed", zap.Error(serveErr))
	}
	b.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	if gs != nil {
		go func() { gs.GracefulStop(); close(done) }()
	} else {
		close(done)
	}
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	select {
	case <-done:
	case <-sctx.Done():
		gs.Stop()
		<-done
	}
	return serveErr
}
