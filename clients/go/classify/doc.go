// Package classify holds the helpers a Go program needs to call the
// classify-gateway (classify.v1.ClassifyService) well:
//
//   - Dial opens a client connection with the project's service config
//     (deploy/service-config.json, embedded here), so that UNAVAILABLE before
//     the first response message is retried by grpc-go itself.
//   - StreamAll runs a Classify stream to the end, hands each page to a
//     callback, and returns the token to resume from.
//   - ErrorDetails, ResumeToken, RetryDelay and UpstreamHTTPStatus read the
//     google.rpc details that the gateway attaches to every error.
//
// The generated stubs live in
// github.com/classify-gateway/classify-gateway/clients/go/gen/classify/v1.
package classify
