package ha

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// newClient connects to the etcd cluster of cfg. It does not wait for etcd: a replica
// started while etcd is down serves its last state and joins when etcd returns.
func newClient(cfg *model.EtcdStore, dialTimeout time.Duration, log *zap.Logger) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("etcd: no endpoints")
	}
	tlsCfg, err := clientTLS(cfg)
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: dialTimeout,
		// gRPC keepalive finds a connection that went silent (a pulled cable) so that
		// requests move to another member. 10 s is the shortest grpc-go allows.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		TLS:                  tlsCfg,
		// The client logs every retry as a warning; Sluice reports what matters itself.
		Logger: log.Named("etcd").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
	})
}

// clientTLS builds the TLS config for https:// endpoints: the system roots or cfg.TLS.CA,
// and a client certificate when cfg.TLS has one. nil for plain endpoints.
func clientTLS(cfg *model.EtcdStore) (*tls.Config, error) {
	secure := false
	for _, e := range cfg.Endpoints {
		secure = secure || strings.HasPrefix(e, "https://")
	}
	if !secure && cfg.TLS == nil {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLS == nil {
		return c, nil
	}
	if cfg.TLS.CA != "" {
		pem, err := os.ReadFile(cfg.TLS.CA)
		if err != nil {
			return nil, fmt.Errorf("etcd tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd tls.ca: %s holds no PEM certificate", cfg.TLS.CA)
		}
		c.RootCAs = pool
	}
	if cfg.TLS.Cert != "" || cfg.TLS.Key != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd tls.cert/tls.key (%s, %s): %w", cfg.TLS.Cert, cfg.TLS.Key, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
