package xds

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// tlsRecheck is how often, at most, the TLS files are checked for changes.
var tlsRecheck = time.Second

// certFiles loads a certificate, key and optional client CA, and reloads them when a
// file's content changes (checked on handshake, at most every tlsRecheck).
type certFiles struct {
	files *model.TLS
	log   *zap.Logger

	mu      sync.Mutex
	checked time.Time
	stamp   string
	cert    *tls.Certificate
	pool    *x509.CertPool
}

func serverTLS(files *model.TLS, log *zap.Logger) (*tls.Config, error) {
	if files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("xds: TLS needs both a certificate and a key file")
	}
	cf := &certFiles{files: files, log: log}
	if _, _, err := cf.load(true); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool, err := cf.load(false)
			if err != nil {
				return nil, err
			}
			cfg := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert},
				NextProtos:   []string{"h2"},
			}
			if pool != nil {
				cfg.ClientCAs = pool
				cfg.ClientAuth = tls.RequireAndVerifyClientCert
			}
			return cfg, nil
		},
	}, nil
}

func (cf *certFiles) stampOf() (string, error) {
	s := ""
	for _, p := range []string{cf.files.CertFile, cf.files.KeyFile, cf.files.ClientCAFile} {
		if p == "" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("xds: TLS: %w", err)
		}
		s += fmt.Sprintf("%s:%x;", p, sha256.Sum256(b))
	}
	return s, nil
}

// load returns the current material, reloading it when the files changed. A reload that
// fails keeps the previous material (and logs why).
func (cf *certFiles) load(first bool) (*tls.Certificate, *x509.CertPool, error) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if !first && time.Since(cf.checked) < tlsRecheck {
		return cf.cert, cf.pool, nil
	}
	cf.checked = time.Now()
	stamp, err := cf.stampOf()
	if err == nil && stamp == cf.stamp {
		return cf.cert, cf.pool, nil
	}
	if err == nil {
		var cert tls.Certificate
		cert, err = tls.LoadX509KeyPair(cf.files.CertFile, cf.files.KeyFile)
		var pool *x509.CertPool
		if err == nil && cf.files.ClientCAFile != "" {
			var pem []byte
			pem, err = os.ReadFile(cf.files.ClientCAFile)
			if err == nil {
				pool = x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					err = fmt.Errorf("xds: TLS: no certificate in %s", cf.files.ClientCAFile)
				}
			}
		}
		if err == nil {
			cf.cert, cf.pool, cf.stamp = &cert, pool, stamp
			if !first {
				cf.log.Info("xds TLS material reloaded")
			}
			return cf.cert, cf.pool, nil
		}
	}
	if first || cf.cert == nil {
		return nil, nil, fmt.Errorf("xds: TLS: %w", err)
	}
	cf.log.Error("xds TLS reload failed; keeping the previous certificate", zap.Error(err))
	return cf.cert, cf.pool, nil
}
