package classify

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"

	classifyv1 "github.com/classify-gateway/classify-gateway/clients/go/gen/classify/v1"
)

// StreamAll calls Classify with req and passes every page to fn, in order, as
// it arrives. It returns when the stream ends, when it fails, or when fn
// returns an error (the stream is then cancelled, so the gateway stops
// fetching pages).
//
// resumeToken tells where to continue:
//   - err == nil: "" when the classification is complete, or the last page's
//     next_page_token when the stream stopped earlier (req.max_pages).
//   - err != nil: the token of the first page fn has not accepted: the
//     error's ErrorInfo `resume_page_token` when the gateway set one, otherwise
//     the next_page_token of the last page fn accepted (or req.page_token when
//     no page arrived). Call StreamAll again with
//     &classifyv1.ClassifyRequest{PageToken: resumeToken} to get the rest,
//     with no page lost or repeated. "" means there is nothing to resume
//     from: start the classification again.
//
// If fn returns an error, StreamAll returns that error unchanged.
func StreamAll(
	ctx context.Context,
	client classifyv1.ClassifyServiceClient,
	req *classifyv1.ClassifyRequest,
	fn func(*classifyv1.ClassifyResponse) error,
	opts ...grpc.CallOption,
) (resumeToken string, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	resume := req.GetPageToken() // where to continue if nothing is accepted
	received := false
	stream, err := client.Classify(ctx, req, opts...)
	if err != nil {
		return resumeFrom(err, resume), err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if !received {
				return "", nil
			}
			return resume, nil
		}
		if err != nil {
			return resumeFrom(err, resume), err
		}
		if err := fn(resp); err != nil {
			return resume, err
		}
		received = true
		resume = resp.GetPageInfo().GetNextPageToken()
	}
}

func resumeFrom(err error, fallback string) string {
	if tok := ResumeToken(err); tok != "" {
		return tok
	}
	return fallback
}
