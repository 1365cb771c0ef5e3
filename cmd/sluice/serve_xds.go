package main

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/xds"
)

func init() {
	startXDS = func(ctx context.Context, x *model.XDS, log *zap.Logger, reg prometheus.Registerer) (
		analyzer.DataPlane, http.Handler, func(), error) {
		s, err := xds.New(xds.Options{Logger: log, Registerer: reg, Address: x.Address,
			TLS: x.TLS, Keepalive: x.Keepalive, AckTimeout: x.AckTimeout})
		if err != nil {
			return nil, nil, nil, err
		}
		if err := s.Start(ctx); err != nil {
			return nil, nil, nil, err
		}
		return s, s.NodesHandler(), s.Stop, nil
	}
}
