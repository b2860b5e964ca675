package classify

import (
	_ "embed"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ServiceConfig is the gRPC service config of the gateway, a byte-for-byte
// copy of deploy/service-config.json (a test keeps the two identical; `make
// generate` refreshes the copy). It gives Classify a 300 s and GetClassifyPage a
// 30 s default deadline and retries UNAVAILABLE up to 5 attempts with exponential
// backoff (0.1 s, doubling, at most 2 s). gRPC retries a streaming call only
// until the first response message has arrived, so a retry never repeats a
// page the caller has already seen.
//
//go:embed service-config.json
var ServiceConfig string

// Dial returns a client connection to the gateway at addr (host:port) with
// ServiceConfig as the default service config. It does not connect yet (it
// uses grpc.NewClient): the first RPC does.
//
// The connection is plaintext unless opts carry other transport credentials
// (grpc.WithTransportCredentials): opts are applied after the defaults, so
// they win. Callers close the connection when done.
func Dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	all := make([]grpc.DialOption, 0, 2+len(opts))
	all = append(all,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(ServiceConfig),
	)
	all = append(all, opts...)
	return grpc.NewClient(addr, all...)
}
