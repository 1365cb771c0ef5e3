package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/xds"
)

func init() {
	newXDS = func(x *model.XDS, log *zap.Logger, reg prometheus.Registerer) (xdsServer, error) {
		return xds.New(xds.Options{Logger: log, Registerer: reg, Address: x.Address,
			TLS: x.TLS, Keepalive: x.Keepalive, AckTimeout: x.AckTimeout})
	}
}
