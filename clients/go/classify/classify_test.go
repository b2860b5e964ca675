package classify_test

// Unit tests: no gateway needed. They run an in-process fake ClassifyService
// on a loopback port to pin down what the helpers do.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/classify-gateway/classify-gateway/clients/go/classify"
	classifyv1 "github.com/classify-gateway/classify-gateway/clients/go/gen/classify/v1"
)

// The embedded service config names every RPC, with a timeout and a retry
// policy grpc-go accepts. (That it is a fresh copy of
// deploy/service-config.json is checked at the repository root, by
// tests/contract/test_client_copies.py, so this module tests on its own.)
func TestServiceConfig(t *testing.T) {
	want := []byte(classify.ServiceConfig)
	var cfg struct {
		MethodConfig []struct {
			Name []struct {
				Service string `json:"service"`
				Method  string `json:"method"`
			} `json:"name"`
			Timeout     string `json:"timeout"`
			RetryPolicy struct {
				MaxAttempts          int      `json:"maxAttempts"`
				RetryableStatusCodes []string `json:"retryableStatusCodes"`
			} `json:"retryPolicy"`
		} `json:"methodConfig"`
	}
	if err := json.Unmarshal(want, &cfg); err != nil {
		t.Fatalf("service config is not JSON: %v", err)
	}
	// One entry per RPC of the service, each with a timeout; AIP-194: only
	// UNAVAILABLE is retried automatically, at most 5 attempts.
	methods := map[string]bool{}
	for _, mc := range cfg.MethodConfig {
		if len(mc.Name) != 1 || mc.Name[0].Service != classifyv1.ClassifyService_ServiceDesc.ServiceName {
			t.Fatalf("service config entry does not name %s: %s", classifyv1.ClassifyService_ServiceDesc.ServiceName, want)
		}
		methods[mc.Name[0].Method] = true
		if mc.Timeout == "" {
			t.Errorf("no timeout for %s", mc.Name[0].Method)
		}
		rp := mc.RetryPolicy
		if strings.Join(rp.RetryableStatusCodes, ",") != "UNAVAILABLE" || rp.MaxAttempts < 2 || rp.MaxAttempts > 5 {
			t.Fatalf("unexpected retry policy %+v", rp)
		}
	}
	for _, m := range classifyv1.ClassifyService_ServiceDesc.Methods {
		if !methods[m.MethodName] {
			t.Errorf("no service config entry for %s", m.MethodName)
		}
	}
	for _, m := range classifyv1.ClassifyService_ServiceDesc.Streams {
		if !methods[m.StreamName] {
			t.Errorf("no service config entry for %s", m.StreamName)
		}
	}
	// grpc-go validates the config when the client is built.
	conn, err := classify.Dial("127.0.0.1:1")
	if err != nil {
		t.Fatalf("Dial rejected the service config: %v", err)
	}
	_ = conn.Close()
}

func TestErrorDetails(t *testing.T) {
	st, err := status.New(codes.Unavailable, "upstream failed").WithDetails(
		&errdetails.ErrorInfo{
			Reason: "UPSTREAM_UNAVAILABLE",
			Domain: classify.ErrorDomain,
			Metadata: map[string]string{
				classify.MetadataResumePageToken: "tok-3",
				classify.MetadataHTTPStatus:      "500",
			},
		},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)},
		&errdetails.ResourceInfo{ResourceType: "videos", ResourceName: "v-404"},
	)
	if err != nil {
		t.Fatal(err)
	}
	wrapped := fmt.Errorf("page 3: %w", st.Err())
	info, bad, retry := classify.ErrorDetails(wrapped)
	if info.GetReason() != "UPSTREAM_UNAVAILABLE" || bad != nil || retry == nil {
		t.Fatalf("ErrorDetails = %v, %v, %v", info, bad, retry)
	}
	d := classify.DetailsOf(wrapped)
	if d.ErrorInfo.GetReason() != info.GetReason() || d.RetryInfo == nil || d.BadRequest != nil ||
		d.ResourceInfo.GetResourceType() != "videos" || d.ResourceInfo.GetResourceName() != "v-404" {
		t.Fatalf("DetailsOf = %+v", d)
	}
	if got := classify.ResumeToken(wrapped); got != "tok-3" {
		t.Fatalf("ResumeToken = %q", got)
	}
	if d, ok := classify.RetryDelay(wrapped); !ok || d != 1500*time.Millisecond {
		t.Fatalf("RetryDelay = %v, %v", d, ok)
	}
	if got := classify.UpstreamHTTPStatus(wrapped); got != 500 {
		t.Fatalf("UpstreamHTTPStatus = %d", got)
	}

	badSt, _ := status.New(codes.InvalidArgument, "bad").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "page_limit", Description: "1 to 50"}},
	})
	if _, bad, _ := classify.ErrorDetails(badSt.Err()); bad.GetFieldViolations()[0].GetField() != "page_limit" {
		t.Fatalf("BadRequest = %v", bad)
	}

	for _, e := range []error{nil, errors.New("plain"), status.Error(codes.Internal, "no details")} {
		info, bad, retry := classify.ErrorDetails(e)
		if (classify.DetailsOf(e) != classify.Details{}) {
			t.Fatalf("DetailsOf(%v) = %+v", e, classify.DetailsOf(e))
		}
		if info != nil || bad != nil || retry != nil || classify.ResumeToken(e) != "" || classify.UpstreamHTTPStatus(e) != 0 {
			t.Fatalf("ErrorDetails(%v) = %v, %v, %v", e, info, bad, retry)
		}
		if _, ok := classify.RetryDelay(e); ok {
			t.Fatalf("RetryDelay(%v) reported a delay", e)
		}
	}
}

// fakeService serves pages 1..pages with tokens "t2".."tN" (page k's
// next_page_token is "t<k+1>"; the last page's is "").
type fakeService struct {
	classifyv1.UnimplementedClassifyServiceServer
	pages int

	mu sync.Mutex
	// failFirstCalls: the first n calls fail UNAVAILABLE before any message.
	failFirstCalls int
	// failAfter > 0: every stream fails UNAVAILABLE after sending that many
	// pages, with the next page's token as resume_page_token.
	failAfter int
	calls     int
	cancelled chan struct{}
}

func (f *fakeService) Classify(req *classifyv1.ClassifyRequest, stream grpc.ServerStreamingServer[classifyv1.ClassifyResponse]) error {
	f.mu.Lock()
	f.calls++
	call, failFirst, failAfter := f.calls, f.failFirstCalls, f.failAfter
	f.mu.Unlock()
	if call <= failFirst {
		return status.Error(codes.Unavailable, "try again")
	}
	first := 1
	if tok := req.GetPageToken(); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "t"))
		if err != nil || n < 1 || n > f.pages {
			return status.Error(codes.InvalidArgument, "bad token")
		}
		first = n
	}
	sent := 0
	for page := first; page <= f.pages; page++ {
		if failAfter > 0 && sent == failAfter {
			st, _ := status.New(codes.Unavailable, "upstream failed").WithDetails(&errdetails.ErrorInfo{
				Reason:   "UPSTREAM_UNAVAILABLE",
				Domain:   classify.ErrorDomain,
				Metadata: map[string]string{classify.MetadataResumePageToken: fmt.Sprintf("t%d", page)},
			})
			return st.Err()
		}
		if req.GetMaxPages() > 0 && sent == int(req.GetMaxPages()) {
			return nil
		}
		next := ""
		if page < f.pages {
			next = fmt.Sprintf("t%d", page+1)
		}
		msg := &classifyv1.ClassifyResponse{
			Data:       []*classifyv1.VideoClassification{{VideoId: fmt.Sprintf("v%d", page)}},
			PageInfo:   &classifyv1.PageInfo{NextPageToken: next, TotalResults: int32(f.pages)},
			PageNumber: int32(sent + 1),
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
		sent++
		if f.cancelled != nil {
			// Wait for the client to cancel (or a generous timeout).
			select {
			case <-stream.Context().Done():
				close(f.cancelled)
				return stream.Context().Err()
			case <-time.After(5 * time.Second):
			}
		}
	}
	return nil
}

func (f *fakeService) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func startFake(t *testing.T, f *fakeService) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	classifyv1.RegisterClassifyServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func dialFake(t *testing.T, addr string, opts ...grpc.DialOption) classifyv1.ClassifyServiceClient {
	t.Helper()
	conn, err := classify.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return classifyv1.NewClassifyServiceClient(conn)
}

func collect(ctx context.Context, client classifyv1.ClassifyServiceClient, req *classifyv1.ClassifyRequest) ([]string, string, error) {
	var videos []string
	tok, err := classify.StreamAll(ctx, client, req, func(r *classifyv1.ClassifyResponse) error {
		videos = append(videos, r.GetData()[0].GetVideoId())
		return nil
	})
	return videos, tok, err
}

func TestStreamAll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := dialFake(t, startFake(t, &fakeService{pages: 3}))

	videos, tok, err := collect(ctx, client, &classifyv1.ClassifyRequest{VideoIds: []string{"x"}})
	if err != nil || tok != "" || strings.Join(videos, ",") != "v1,v2,v3" {
		t.Fatalf("complete stream: videos=%v tok=%q err=%v", videos, tok, err)
	}
	// A capped stream returns where to continue; continuing gives the rest.
	videos, tok, err = collect(ctx, client, &classifyv1.ClassifyRequest{VideoIds: []string{"x"}, MaxPages: 2})
	if err != nil || tok != "t3" || strings.Join(videos, ",") != "v1,v2" {
		t.Fatalf("capped stream: videos=%v tok=%q err=%v", videos, tok, err)
	}
	videos, tok, err = collect(ctx, client, &classifyv1.ClassifyRequest{PageToken: tok})
	if err != nil || tok != "" || strings.Join(videos, ",") != "v3" {
		t.Fatalf("resumed stream: videos=%v tok=%q err=%v", videos, tok, err)
	}
}

func TestStreamAllMidStreamFailureResumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fake := &fakeService{pages: 4, failAfter: 2}
	client := dialFake(t, startFake(t, fake))

	videos, tok, err := collect(ctx, client, &classifyv1.ClassifyRequest{VideoIds: []string{"x"}})
	if status.Code(err) != codes.Unavailable || tok != "t3" || strings.Join(videos, ",") != "v1,v2" {
		t.Fatalf("failed stream: videos=%v tok=%q err=%v", videos, tok, err)
	}
	// UNAVAILABLE after the first message is not retried by the service config.
	fake.mu.Lock()
	calls := fake.calls
	fake.failAfter = 0
	fake.mu.Unlock()
	if calls != 1 {
		t.Fatalf("a stream that had delivered pages was retried: %d calls", calls)
	}
	rest, tok, err := collect(ctx, client, &classifyv1.ClassifyRequest{PageToken: tok})
	if err != nil || tok != "" || strings.Join(append(videos, rest...), ",") != "v1,v2,v3,v4" {
		t.Fatalf("resumed: rest=%v tok=%q err=%v", rest, tok, err)
	}
}

func TestStreamAllCallbackErrorCancels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fake := &fakeService{pages: 3, cancelled: make(chan struct{})}
	client := dialFake(t, startFake(t, fake))
	stop := errors.New("stop here")
	n := 0
	tok, err := classify.StreamAll(ctx, client, &classifyv1.ClassifyRequest{VideoIds: []string{"x"}}, func(*classifyv1.ClassifyResponse) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || tok != "" || n != 1 {
		t.Fatalf("tok=%q err=%v calls=%d", tok, err, n)
	}
	select {
	case <-fake.cancelled:
	case <-time.After(3 * time.Second):
		t.Fatal("the server did not see the stream cancelled")
	}
}

// The embedded service config makes grpc-go retry UNAVAILABLE that arrives
// before the first message; without it the caller sees the error.
func TestDialRetriesUnavailableBeforeFirstMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fake := &fakeService{pages: 2, failFirstCalls: 2}
	addr := startFake(t, fake)

	videos, _, err := collect(ctx, dialFake(t, addr), &classifyv1.ClassifyRequest{VideoIds: []string{"x"}})
	if err != nil || strings.Join(videos, ",") != "v1,v2" || fake.callCount() != 3 {
		t.Fatalf("with service config: videos=%v err=%v calls=%d", videos, err, fake.callCount())
	}

	fake.mu.Lock()
	fake.calls = 0
	fake.mu.Unlock()
	plain, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_, _, err = collect(ctx, classifyv1.NewClassifyServiceClient(plain), &classifyv1.ClassifyRequest{VideoIds: []string{"x"}})
	if status.Code(err) != codes.Unavailable || fake.callCount() != 1 {
		t.Fatalf("without service config: err=%v calls=%d", err, fake.callCount())
	}
}
