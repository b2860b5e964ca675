package classify_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/classify-gateway/classify-gateway/clients/go/classify"
	classifyv1 "github.com/classify-gateway/classify-gateway/clients/go/gen/classify/v1"
)

// Stream every page of a classification, and resume after a failure from
// the token StreamAll returns, so that no page is lost or repeated.
func ExampleStreamAll() {
	conn, err := classify.Dial("classify-gateway:50051")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := classifyv1.NewClassifyServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req := &classifyv1.ClassifyRequest{
		VideoIds: []string{"video-1", "video-2"},
		Options:  []classifyv1.SearchOption{classifyv1.SearchOption_SEARCH_OPTION_VISUAL},
		Classes: []*classifyv1.ClassDefinition{
			{Name: "Dance", Prompts: []string{"dance tutorial", "dancers on stage"}},
		},
		PageLimit: 10,
	}
	for attempt := 0; attempt < 3; attempt++ {
		resume, err := classify.StreamAll(ctx, client, req, func(page *classifyv1.ClassifyResponse) error {
			for _, v := range page.GetData() {
				fmt.Println(v.GetVideoId(), len(v.GetClasses()))
			}
			return nil
		})
		if err == nil {
			return
		}
		if resume == "" || status.Code(err) != codes.Unavailable {
			log.Fatal(err)
		}
		req = &classifyv1.ClassifyRequest{PageToken: resume} // the rest, nothing else set
	}
}

// Read the google.rpc details of a failed call: why it failed, which field
// was wrong, how long to wait, which resource was missing.
func ExampleDetailsOf() {
	st, _ := status.New(codes.NotFound, "video v-404 not found").WithDetails(
		&errdetails.ErrorInfo{Reason: "RESOURCE_NOT_EXIST", Domain: classify.ErrorDomain,
			Metadata: map[string]string{classify.MetadataHTTPStatus: "404"}},
		&errdetails.ResourceInfo{ResourceType: "videos", ResourceName: "v-404"},
	)
	err := fmt.Errorf("classify: %w", st.Err())

	d := classify.DetailsOf(err)
	fmt.Println(d.ErrorInfo.GetReason(), classify.UpstreamHTTPStatus(err))
	fmt.Println(d.ResourceInfo.GetResourceType(), d.ResourceInfo.GetResourceName())
	fmt.Println(d.BadRequest == nil, d.RetryInfo == nil)
	// Output:
	// RESOURCE_NOT_EXIST 404
	// videos v-404
	// true true
}

// After RESOURCE_EXHAUSTED (an upstream rate limit, or the gateway shedding
// load), wait as long as the error's RetryInfo says before calling again.
func ExampleRetryDelay() {
	st, _ := status.New(codes.ResourceExhausted, "rate limited").WithDetails(
		&errdetails.RetryInfo{RetryDelay: nil},
	)
	if _, ok := classify.RetryDelay(st.Err()); !ok {
		fmt.Println("no delay given: back off on your own")
	}
	// Output:
	// no delay given: back off on your own
}

// A callback error stops the stream: StreamAll cancels the call (the gateway
// stops fetching pages) and returns the callback's error unchanged.
func ExampleStreamAll_stopEarly() {
	conn, err := classify.Dial("classify-gateway:50051")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	enough := errors.New("enough pages")
	seen := 0
	_, err = classify.StreamAll(context.Background(), classifyv1.NewClassifyServiceClient(conn),
		&classifyv1.ClassifyRequest{PageToken: "token-from-an-earlier-call"},
		func(*classifyv1.ClassifyResponse) error {
			seen++
			if seen == 3 {
				return enough
			}
			return nil
		})
	if !errors.Is(err, enough) {
		log.Fatal(err)
	}
}
