package instrument

import (
	"context"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// HTTPStatusFromCode maps a gRPC status code to the HTTP status that google.rpc.Code
// documents for it (the mapping grpc-gateway uses too); Canceled is 499 (client closed).
func HTTPStatusFromCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	default: // Unknown, Internal, DataLoss and codes not defined yet
		return http.StatusInternalServerError
	}
}

// grpcMethod is the method label of every gRPC call.
const grpcMethod = http.MethodPost

// UnaryServerInterceptor counts every unary RPC (see the package doc for the labels).
// Install it with grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()).
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		m.Observe(grpcMethod, info.FullMethod, HTTPStatusFromCode(status.Code(err)), time.Since(start))
		return resp, err
	}
}

// StreamServerInterceptor counts every streaming RPC once, when its handler returns; the
// duration is the stream's whole life.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		m.Observe(grpcMethod, info.FullMethod, HTTPStatusFromCode(status.Code(err)), time.Since(start))
		return err
	}
}

// ServerOptions returns the options that install both interceptors, for grpc.NewServer.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.StreamServerInterceptor()),
	}
}

// ServiceInfoProvider is what PrecreateGRPC needs from a server (*grpc.Server has it).
type ServiceInfoProvider interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}

// PrecreateGRPC creates, at zero, the series of every method registered on srv with each
// of the given codes (default: OK, Internal and Unavailable, i.e. status codes 200, 500
// and 503). Call it after registering the services.
func (m *Metrics) PrecreateGRPC(srv ServiceInfoProvider, cs ...codes.Code) {
	if len(cs) == 0 {
		cs = []codes.Code{codes.OK, codes.Internal, codes.Unavailable}
	}
	statuses := make([]int, 0, len(cs))
	seen := map[int]bool{}
	for _, c := range cs {
		if s := HTTPStatusFromCode(c); !seen[s] {
			seen[s] = true
			statuses = append(statuses, s)
		}
	}
	for svc, info := range srv.GetServiceInfo() {
		for _, md := range info.Methods {
			m.Precreate(grpcMethod, "/"+svc+"/"+md.Name, statuses...)
		}
	}
}
