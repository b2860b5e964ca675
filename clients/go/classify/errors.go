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
// are nil when err is not a gRPC status error. DetailsOf also returns the
// ResourceInfo.
//
// This package imports errdetails, which registers the detail types; a
// program that calls status.FromError(err).Details() itself must import
// google.golang.org/genproto/googleapis/rpc/errdetails too, or the details
// come back as errors ("proto: not found").
func ErrorDetails(err error) (*errdetails.ErrorInfo, *errdetails.BadRequest, *errdetails.RetryInfo) {
	d := DetailsOf(err)
	return d.ErrorInfo, d.BadRequest, d.RetryInfo
}

// Details are the google.rpc details the gateway attaches to an error; each
// field is nil when the error carries no detail of that type.
type Details struct {
	// ErrorInfo: reason (e.g. "UPSTREAM_RATE_LIMITED"), domain ErrorDomain,
	// metadata such as MetadataResumePageToken and MetadataHTTPStatus.
	ErrorInfo *errdetails.ErrorInfo
	// BadRequest: the field violations of an INVALID_ARGUMENT.
	BadRequest *errdetails.BadRequest
	// RetryInfo: how long to wait before calling again.
	RetryInfo *errdetails.RetryInfo
	// ResourceInfo: what an upstream 404 (NOT_FOUND) names: resource_type
	// "videos" or "indexes", resource_name the id.
	ResourceInfo *errdetails.ResourceInfo
}

// DetailsOf returns every google.rpc detail of err that this package knows,
// the first of each type. All fields are nil when err is nil or not a gRPC
// status error.
func DetailsOf(err error) Details {
	var out Details
	if err == nil {
		return out
	}
	s, ok := status.FromError(err)
	if !ok {
		return out
	}
	for _, d := range s.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if out.ErrorInfo == nil {
				out.ErrorInfo = d
			}
		case *errdetails.BadRequest:
			if out.BadRequest == nil {
				out.BadRequest = d
			}
		case *errdetails.RetryInfo:
			if out.RetryInfo == nil {
				out.RetryInfo = d
			}
		case *errdetails.ResourceInfo:
			if out.ResourceInfo == nil {
				out.ResourceInfo = d
			}
		}
	}
	return out
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
