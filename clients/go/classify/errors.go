package classify

import (
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error the gateway
// itself produces.
const ErrorDomain = "classify-gateway.v1"

// ErrorInfo metadata keys set by the gateway.
const (
	// MetadataResumePageToken holds the token of the first page that a failed
	// stream did not deliver. Pass it as ClassifyRequest.page_token.
	MetadataResumePageToken = "resume_page_token"
	// MetadataHTTPStatus holds the upstream HTTP status (e.g. "429", "500")
	// when the failure came from the upstream.
	MetadataHTTPStatus = "http_status"
)

// ErrorDetails returns the google.rpc details the gateway attached to err
// (from the grpc-status-details-bin trailer): its ErrorInfo, its BadRequest
// (field violations of an INVALID_ARGUMENT) and its RetryInfo (how long to
// wait after RESOURCE_EXHAUSTED). Any of them is nil when absent, and all
// are nil when err is not a gRPC status error.
//
// This package imports errdetails, which registers the detail types; a
// program that calls status.FromError(err).Details() itself must import
// google.golang.org/genproto/googleapis/rpc/errdetails too, or the details
// come back as errors ("proto: not found").
func ErrorDetails(err error) (*errdetails.ErrorInfo, *errdetails.BadRequest, *errdetails.RetryInfo) {
	if err == nil {
		return nil, nil, nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return nil, nil, nil
	}
	var (
		info  *errdetails.ErrorInfo
		bad   *errdetails.BadRequest
		retry *errdetails.RetryInfo
	)
	for _, d := range s.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if info == nil {
				info = d
			}
		case *errdetails.BadRequest:
			if bad == nil {
				bad = d
			}
		case *errdetails.RetryInfo:
			if retry == nil {
				retry = d
			}
		}
	}
	return info, bad, retry
}

// ResumeToken returns the ErrorInfo metadata `resume_page_token` of err: the
// token of the first page a failed Classify stream did not deliver, or ""
// when the error carries none (the stream failed before its first page, or
// err did not come from the gateway).
func ResumeToken(err error) string {
	info, _, _ := ErrorDetails(err)
	return info.GetMetadata()[MetadataResumePageToken]
}

// RetryDelay returns the RetryInfo delay of err (how long the gateway asks
// the caller to wait, e.g. after an upstream rate limit) and whether err
// carried one.
func RetryDelay(err error) (time.Duration, bool) {
	_, _, retry := ErrorDetails(err)
	if retry == nil || retry.GetRetryDelay() == nil {
		return 0, false
	}
	return retry.GetRetryDelay().AsDuration(), true
}

// UpstreamHTTPStatus returns the ErrorInfo metadata `http_status` of err as a
// number (the upstream's HTTP status that caused the error), or 0.
func UpstreamHTTPStatus(err error) int {
	info, _, _ := ErrorDetails(err)
	n, convErr := strconv.Atoi(info.GetMetadata()[MetadataHTTPStatus])
	if convErr != nil {
		return 0
	}
	return n
}
