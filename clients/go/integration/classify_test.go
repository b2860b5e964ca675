//go:build integration

package integration

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/classify-gateway/classify-gateway/clients/go/classify"
	classifyv1 "github.com/classify-gateway/classify-gateway/clients/go/gen/classify/v1"
)

const (
	testVideos    = 7 // with page limit 2: four pages
	testPageLimit = 2
)

var upperSnake = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,62}$`)

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// multiPage returns a request, the test's own question (ownQuestion), and the expected
// answer to it (expectedPages: on v1.2 the emulator's own), with at least three pages.
// The journal is cleared first, so that right after this it shows how the expected
// answer was got (on v1.3: the gateway's first computation of the question).
func multiPage(t *testing.T, e *stackEnv) (*classifyv1.ClassifyRequest, []*classifyv1.GetClassifyPageResponse) {
	t.Helper()
	req := ownQuestion(t, demoRequest(e.someVideos(t, testVideos), testPageLimit))
	e.clearJournal(t)
	want := e.expectedPages(t, req)
	if len(want) < 3 {
		t.Fatalf("the expected answer has %d pages; the test needs at least 3 (total_results %d)", len(want), want[0].GetPageInfo().GetTotalResults())
	}
	t.Logf("%s: %d videos, page_limit %d: %d pages, total_results %d", backend(),
		len(req.GetVideoIds()), req.GetPageLimit(), len(want), want[0].GetPageInfo().GetTotalResults())
	return req, want
}

// Every page arrives, in order, with every field equal to the expected answer to
// the same request (v1.2: the upstream's own), and the backend's scoring. The call
// sends no metadata: the shipped path, as a caller meets it.
func TestClassifyStreamsEveryPageInOrder(t *testing.T) {
	e := newStack(t)
	req, want := multiPage(t, e)
	firstAsk := e.journal(t) // v1.3: the gateway computing the expected pages
	e.clearJournal(t)        // from here on the journal shows only this test's stream

	got, err := streamPages(testCtx(t, 30*time.Second), e.client(t), req)
	if err != nil {
		t.Fatalf("Classify: %s", describe(err))
	}
	if len(got) != len(want) {
		t.Fatalf("got %d pages, the upstream has %d", len(got), len(want))
	}
	for i, page := range got {
		n := i + 1
		if page.GetPageNumber() != int32(n) {
			t.Errorf("message %d has page_number %d", n, page.GetPageNumber())
		}
		pi := page.GetPageInfo()
		if last := n == len(got); (pi.GetNextPageToken() == "") != last {
			t.Errorf("page %d: next_page_token %q (last page: %v)", n, pi.GetNextPageToken(), last)
		}
		if (pi.GetPrevPageToken() == "") != (want[i].GetPageInfo().GetPrevPageToken() == "") {
			t.Errorf("page %d: prev_page_token %q, upstream %q", n, pi.GetPrevPageToken(), want[i].GetPageInfo().GetPrevPageToken())
		}
		if !pi.GetPageExpiredAt().IsValid() || pi.GetPageExpiredAt().AsTime().Before(time.Now()) {
			t.Errorf("page %d: page_expired_at %v is not a future time", n, pi.GetPageExpiredAt())
		}
		assertSamePage(t, fmt.Sprintf("page %d", n), fromStream(page), fromPage(want[i]))
	}
	// The clips and detailed scores asked for are there (not just equal-and-empty).
	c := got[0].GetData()[0].GetClasses()
	if len(c) == 0 || len(c[0].GetClips()) == 0 || c[0].GetDetailedScores() == nil {
		t.Errorf("page 1 lacks classes, clips or detailed scores: %v", got[0].GetData()[0])
	}
	posts, gets := classifyCalls(e.journal(t))
	if isV13() {
		assertComputedOnce(t, firstAsk, req)
		// This stream asked the question again: the page cache answered it.
		if len(posts)+len(gets) != 0 {
			t.Errorf("a repeated question cost %d embed-v2 and %d video calls; want none (the page cache)", len(posts), len(gets))
		}
	} else if len(posts) != 1 || len(gets) != len(want)-1 {
		t.Errorf("the gateway made %d POST and %d GET page calls; want 1 and %d", len(posts), len(gets), len(want)-1)
	}
}

// assertComputedOnce checks a v1.3 computation of req in journal j: one embed-v2 per
// distinct prompt (the test's own, ownQuestion, so none was cached) and at most one
// retrieval per video (another test may have fetched a video's segments before: the
// gateway's caches keep them for the whole suite).
func assertComputedOnce(t *testing.T, j []journalEntry, req *classifyv1.ClassifyRequest) {
	t.Helper()
	posts, gets := classifyCalls(j)
	if len(posts) != distinctPrompts(req) {
		t.Errorf("%d embed-v2 calls for %d distinct prompts of the test's own: %v", len(posts), distinctPrompts(req), posts)
	}
	seen := map[string]bool{}
	for _, g := range gets {
		if seen[g.Path] {
			t.Errorf("video fetched twice: %s", g.Path)
		}
		seen[g.Path] = true
	}
	if len(gets) > len(req.GetVideoIds()) {
		t.Errorf("%d video retrievals for %d videos", len(gets), len(req.GetVideoIds()))
	}
}

// index_id classifies a whole index (v1.2: upstream POST /classify/bulk; v1.3:
// the gateway walks the index's video listing).
func TestClassifyIndex(t *testing.T) {
	e := newStack(t)
	indexes, _ := e.corpus(t)
	req := demoRequest(nil, 5)
	req.IndexId = indexes[0]
	req.IncludeClips = false
	want := e.expectedPages(t, req)

	t.Logf("index %s: %d pages expected, total_results %d", req.GetIndexId(), len(want), want[0].GetPageInfo().GetTotalResults())
	if len(want) < 2 {
		t.Fatalf("the test needs a multi-page bulk classification")
	}

	got, err := streamPages(testCtx(t, 30*time.Second), e.client(t), req)
	if err != nil {
		t.Fatalf("Classify(index_id): %s", describe(err))
	}
	if len(got) != len(want) {
		t.Fatalf("got %d pages, the upstream has %d", len(got), len(want))
	}
	for i := range got {
		assertSamePage(t, "bulk page", fromStream(got[i]), fromPage(want[i]))
	}
}

// max_pages caps the stream; the last message says where to continue.
func TestClassifyMaxPages(t *testing.T) {
	e := newStack(t)
	req, want := multiPage(t, e)
	req.MaxPages = 2
	e.clearJournal(t)

	got, err := streamPages(testCtx(t, 30*time.Second), e.client(t), req)
	if err != nil {
		t.Fatalf("Classify: %s", describe(err))
	}
	if len(got) != 2 {
		t.Fatalf("max_pages 2 gave %d pages", len(got))
	}
	for i := range got {
		assertSamePage(t, "capped page", fromStream(got[i]), fromPage(want[i]))
	}
	if got[1].GetPageInfo().GetNextPageToken() == "" {
		t.Fatal("the last capped page has no next_page_token to resume from")
	}
	time.Sleep(200 * time.Millisecond)
	posts, gets := classifyCalls(e.journal(t))
	if isV13() {
		// v1.3 ranks every video before page 1 (the cap cannot save those calls): the
		// expected pages were that computation, and the capped stream, the same
		// question, read its pages from the page cache.
		if len(posts)+len(gets) != 0 {
			t.Errorf("max_pages 2 of a question already asked: %d embed-v2 and %d video calls; want none", len(posts), len(gets))
		}
	} else if len(gets) > 1 {
		// No page beyond the cap was fetched (page 2 is the only GET).
		t.Errorf("the gateway fetched %d pages by token for max_pages 2 (want 1): %v", len(gets), gets)
	}
}

// A stream started with only page_token continues the classification from
// that page, without starting a new one (v1.2: no new POST; v1.3 keeps no
// classification, its token names the question and the page, which it recomputes).
func TestClassifyResumeFromToken(t *testing.T) {
	e := newStack(t)
	req, want := multiPage(t, e)
	req.MaxPages = 1
	client := e.client(t)
	ctx := testCtx(t, 30*time.Second)

	first, err := streamPages(ctx, client, req)
	if err != nil || len(first) != 1 {
		t.Fatalf("Classify(max_pages 1): %d pages, %s", len(first), describe(err))
	}
	token := first[0].GetPageInfo().GetNextPageToken()
	if isV13() && !strings.HasPrefix(token, "c13.") {
		t.Errorf("a v1.3 gateway minted next_page_token %q; want its own c13. token", token)
	}
	e.clearJournal(t)
	rest, err := streamPages(ctx, client, &classifyv1.ClassifyRequest{PageToken: token})
	if err != nil {
		t.Fatalf("Classify(page_token): %s", describe(err))
	}
	if len(rest) != len(want)-1 {
		t.Fatalf("resume gave %d pages, want %d", len(rest), len(want)-1)
	}
	for i, page := range rest {
		if page.GetPageNumber() != int32(i+1) {
			t.Errorf("resumed message %d has page_number %d (numbering is per stream)", i+1, page.GetPageNumber())
		}
		assertSamePage(t, "resumed page", fromStream(page), fromPage(want[i+1]))
	}
	if posts, _ := classifyCalls(e.journal(t)); !isV13() && len(posts) != 0 {
		t.Errorf("resuming started %d new classifications", len(posts))
	}
}

// GetClassifyPage returns exactly one page for a token, next or prev.
func TestGetClassifyPage(t *testing.T) {
	e := newStack(t)
	req, want := multiPage(t, e)
	req.MaxPages = 1
	client := e.client(t)
	ctx := testCtx(t, 30*time.Second)

	first, err := streamPages(ctx, client, req)
	if err != nil || len(first) != 1 {
		t.Fatalf("Classify(max_pages 1): %d pages, %s", len(first), describe(err))
	}
	page2, err := client.GetClassifyPage(ctx, &classifyv1.GetClassifyPageRequest{PageToken: first[0].GetPageInfo().GetNextPageToken()})
	if err != nil {
		t.Fatalf("GetClassifyPage(page 2): %s", describe(err))
	}
	assertSamePage(t, "page 2", fromPage(page2), fromPage(want[1]))
	if page2.GetPageInfo().GetNextPageToken() == "" || page2.GetPageInfo().GetPrevPageToken() == "" {
		t.Fatalf("page 2 of %d lacks next or prev token: %v", len(want), page2.GetPageInfo())
	}
	page1, err := client.GetClassifyPage(ctx, &classifyv1.GetClassifyPageRequest{PageToken: page2.GetPageInfo().GetPrevPageToken()})
	if err != nil {
		t.Fatalf("GetClassifyPage(prev of page 2): %s", describe(err))
	}
	assertSamePage(t, "page 1 by prev_page_token", fromPage(page1), fromPage(want[0]))

	// Walk to the end by hand, as an AIP-158 caller would.
	pages := []*classifyv1.GetClassifyPageResponse{page1, page2}
	for tok := page2.GetPageInfo().GetNextPageToken(); tok != ""; {
		p, err := client.GetClassifyPage(ctx, &classifyv1.GetClassifyPageRequest{PageToken: tok})
		if err != nil {
			t.Fatalf("GetClassifyPage(page %d): %s", len(pages)+1, describe(err))
		}
		pages = append(pages, p)
		tok = p.GetPageInfo().GetNextPageToken()
	}
	if len(pages) != len(want) {
		t.Fatalf("paging by hand gave %d pages, want %d", len(pages), len(want))
	}

	_, err = client.GetClassifyPage(ctx, &classifyv1.GetClassifyPageRequest{})
	if _, bad, _ := classify.ErrorDetails(err); status.Code(err) != codes.InvalidArgument ||
		len(bad.GetFieldViolations()) == 0 || bad.GetFieldViolations()[0].GetField() != "page_token" {
		t.Fatalf("GetClassifyPage(no token): want INVALID_ARGUMENT with a page_token violation, got %s", describe(err))
	}
}

// A slow upstream and a short deadline end in DEADLINE_EXCEEDED on time, and
// the gateway gives up its upstream call (v1.2's POST /classify, v1.3's embed-v2).
func TestDeadlineExceededOnSlowUpstream(t *testing.T) {
	e := newStack(t)
	req := e.faultRequest(t)
	e.addFault(t, fault{Match: startMatch(), Times: -1,
		Action: map[string]any{"type": "latency", "ms": 3000}})

	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	pages, err := streamPages(fresh(ctx), e.client(t), req)
	elapsed := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded || len(pages) != 0 {
		t.Fatalf("want DEADLINE_EXCEEDED and no page, got %d pages, %s", len(pages), describe(err))
	}
	if elapsed > 1500*time.Millisecond {
		t.Errorf("DEADLINE_EXCEEDED came after %v for a 700ms deadline", elapsed)
	}
	// The emulator is still sleeping on the one POST; once it would have
	// answered, the journal must show it was abandoned, and not retried.
	time.Sleep(3 * time.Second)
	posts, _ := classifyCalls(e.journal(t))
	if len(posts) != 1 {
		t.Errorf("want exactly 1 upstream POST, journal has %d: %v", len(posts), posts)
	}
	assertAbandoned(t, posts, "the upstream POST was not abandoned by the gateway after the deadline")
}

// Cancelling after the first page ends the stream with CANCELLED and stops the
// gateway's upstream work: on v1.2 no page request completes after the cancel; on
// v1.3, which fetches everything before page 1, no upstream call follows it.
func TestCancelMidStream(t *testing.T) {
	e := newStack(t)
	req := ownQuestion(t, demoRequest(e.someVideos(t, testVideos), 1))
	if !isV13() {
		// Page fetches are slow, so page 2 cannot complete before we cancel.
		e.addFault(t, fault{Match: faultMatch{Method: "GET", Path: "/classify/"}, Times: -1,
			Action: map[string]any{"type": "latency", "ms": 1500}})
	}

	ctx, cancel := context.WithCancel(fresh(testCtx(t, 30*time.Second)))
	stream, err := e.client(t).Classify(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("first page: %s", describe(err))
	}
	if first.GetPageNumber() != 1 || first.GetPageInfo().GetNextPageToken() == "" {
		t.Fatalf("want page 1 of several, got %v", first.GetPageInfo())
	}
	cancel()
	// A page that had arrived before the cancel may still be read; then the stream ends.
	for err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Canceled {
		t.Fatalf("after cancel: want CANCELLED, got %s", describe(err))
	}
	if isV13() {
		atCancel := e.journal(t) // v1.3 makes every upstream call before page 1
		assertComputedOnce(t, atCancel, req)
		time.Sleep(500 * time.Millisecond)
		if after := e.journal(t); len(after) != len(atCancel) {
			t.Errorf("a stream cancelled after page 1: %d upstream calls followed the cancel: %v", len(after)-len(atCancel), after[len(atCancel):])
		}
		return
	}
	// Let the delayed page request run out, then read the journal.
	time.Sleep(2500 * time.Millisecond)
	_, gets := classifyCalls(e.journal(t))
	if len(gets) > 1 {
		t.Errorf("the gateway started %d page fetches for a stream cancelled after page 1 (want at most 1, the prefetch): %v", len(gets), gets)
	}
	assertAbandoned(t, gets, "a page request completed after the cancel")
}

// An invalid request is refused before any upstream call, and every bad field
// is named in google.rpc.BadRequest.
func TestInvalidRequestBadRequest(t *testing.T) {
	e := newStack(t)
	req := &classifyv1.ClassifyRequest{
		// neither video_ids nor index_id
		Options:   []classifyv1.SearchOption{classifyv1.SearchOption_SEARCH_OPTION_VISUAL},
		Classes:   []*classifyv1.ClassDefinition{{Name: "Dance"}}, // no prompts
		PageLimit: 99,                                             // 1 to 50
	}
	_, err := streamPages(testCtx(t, 10*time.Second), e.client(t), req)

	// Read the details the plain grpc-go way; the errdetails import is what
	// lets s.Details() decode them (without it they are "proto: not found").
	s, ok := status.FromError(err)
	if !ok || s.Code() != codes.InvalidArgument {
		t.Fatalf("want INVALID_ARGUMENT, got %s", describe(err))
	}
	var (
		info *errdetails.ErrorInfo
		bad  *errdetails.BadRequest
	)
	for _, d := range s.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.BadRequest:
			bad = d
		case error:
			t.Errorf("a detail did not decode: %v", d)
		}
	}
	if bad == nil {
		t.Fatalf("no google.rpc.BadRequest in %s", describe(err))
	}
	var fields []string
	for _, v := range bad.GetFieldViolations() {
		fields = append(fields, v.GetField())
		if v.GetDescription() == "" {
			t.Errorf("violation of %s has no description", v.GetField())
		}
	}
	for _, f := range []string{"video_ids", "classes[0].prompts", "page_limit"} {
		if !slices.Contains(fields, f) {
			t.Errorf("BadRequest lacks a violation of %s: %v", f, fields)
		}
	}
	// The helper reads the same details.
	if i2, b2, _ := classify.ErrorDetails(err); !proto.Equal(i2, info) || !proto.Equal(b2, bad) {
		t.Errorf("classify.ErrorDetails disagrees with status.Details: %v %v", i2, b2)
	}
	if info.GetDomain() != classify.ErrorDomain || !upperSnake.MatchString(info.GetReason()) {
		t.Errorf("ErrorInfo %v: want domain %s and an UPPER_SNAKE_CASE reason", info, classify.ErrorDomain)
	}
	if posts, gets := classifyCalls(e.journal(t)); len(posts)+len(gets) != 0 {
		t.Errorf("an invalid request reached the upstream: %v %v", posts, gets)
	}
}

// A rate limit longer than the caller's deadline is answered at once with
// RESOURCE_EXHAUSTED and RetryInfo carrying the upstream's Retry-After.
//
// The gateway remembers an upstream 429 for every replica until its Retry-After
// (the shared quota), so the Retry-After here is short and the test waits it out:
// the suite shares one gateway, and the next test must find the quota open.
func TestRateLimitedRetryInfo(t *testing.T) {
	const retryAfter = 4 * time.Second
	e := newStack(t)
	req := e.faultRequest(t)
	e.addFault(t, fault{Match: startMatch(), Times: -1,
		Action: map[string]any{"type": "rate_limit", "retry_after": int(retryAfter / time.Second)}})

	start := time.Now()
	t.Cleanup(func() { time.Sleep(time.Until(start.Add(retryAfter + 500*time.Millisecond))) })
	_, err := streamPages(fresh(testCtx(t, 2*time.Second)), e.client(t), req)
	elapsed := time.Since(start)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("want RESOURCE_EXHAUSTED, got %s", describe(err))
	}
	if elapsed > 1500*time.Millisecond {
		t.Errorf("RESOURCE_EXHAUSTED took %v; a 4s Retry-After cannot fit a 2s deadline, so it should be immediate", elapsed)
	}
	delay, ok := classify.RetryDelay(err)
	if !ok || delay < 3*time.Second || delay > retryAfter+500*time.Millisecond {
		t.Errorf("RetryInfo.retry_delay = %v (present %v), want about 4s", delay, ok)
	}
	info, _, _ := classify.ErrorDetails(err)
	if info.GetDomain() != classify.ErrorDomain || classify.UpstreamHTTPStatus(err) != 429 {
		t.Errorf("ErrorInfo %v: want domain %s and http_status 429", info, classify.ErrorDomain)
	}
	if posts, _ := classifyCalls(e.journal(t)); len(posts) != 1 {
		t.Errorf("want 1 upstream POST (no retry that cannot succeed in time), got %d", len(posts))
	}
}

// An upstream failure mid-stream ends the stream with the resume token of the
// first page not received; resuming from it gives the rest, no page lost or
// repeated.
func TestMidStreamFailureResume(t *testing.T) {
	skipOn(t, "v1.3", "it computes every page before it sends the first (ranking needs every video), "+
		"so no upstream call is left mid-stream for a fault to fail; resuming from a token is TestClassifyResumeFromToken's")
	e := newStack(t)
	req, want := multiPage(t, e)
	e.clearJournal(t)
	// The first page fetch by token succeeds, every later one fails with 500.
	e.addFault(t, fault{Match: faultMatch{Method: "GET", Path: "/classify/"}, After: 1, Times: -1,
		Action: map[string]any{"type": "status", "status": 500}})
	client := e.client(t)
	ctx := fresh(testCtx(t, 30*time.Second)) // every page from the upstream (and its fault)

	var got []*classifyv1.ClassifyResponse
	collect := func(p *classifyv1.ClassifyResponse) error { got = append(got, p); return nil }
	resume, err := classify.StreamAll(ctx, client, req, collect)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE mid-stream, got %s", describe(err))
	}
	if len(got) != 2 {
		t.Fatalf("want pages 1 and 2 before the failure, got %d", len(got))
	}
	info, _, _ := classify.ErrorDetails(err)
	if info.GetDomain() != classify.ErrorDomain || info.GetMetadata()[classify.MetadataHTTPStatus] != "500" {
		t.Errorf("ErrorInfo %v: want domain %s, http_status 500", info, classify.ErrorDomain)
	}
	if tok := classify.ResumeToken(err); tok == "" || tok != got[1].GetPageInfo().GetNextPageToken() || tok != resume {
		t.Fatalf("resume_page_token %q; want the next_page_token of page 2 (%q), StreamAll returned %q",
			tok, got[1].GetPageInfo().GetNextPageToken(), resume)
	}
	if posts, _ := classifyCalls(e.journal(t)); len(posts) != 1 {
		t.Errorf("a stream that had delivered pages was retried: %d POSTs", len(posts))
	}

	e.clearFaults(t)
	resume, err = classify.StreamAll(ctx, client, &classifyv1.ClassifyRequest{PageToken: resume}, collect)
	if err != nil || resume != "" {
		t.Fatalf("resume: token %q, %s", resume, describe(err))
	}
	if len(got) != len(want) {
		t.Fatalf("%d pages in all after the resume, want %d", len(got), len(want))
	}
	for i := range got {
		assertSamePage(t, "page after resume", fromStream(got[i]), fromPage(want[i]))
	}
	var ids []string
	for _, p := range got {
		ids = append(ids, videoIDs(p.GetData())...)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("video %s arrived twice", id)
		}
		seen[id] = true
	}
	if int32(len(ids)) != want[0].GetPageInfo().GetTotalResults() {
		t.Errorf("%d videos in all, total_results %d", len(ids), want[0].GetPageInfo().GetTotalResults())
	}
}

// The service config retries UNAVAILABLE only when nothing reached the
// upstream (a draining pod's refusal, see TestDialRetriesUnavailableBeforeFirstMessage
// for grpc-go's side). An upstream 500 is not retried by the gateway either, and
// comes with grpc-retry-pushback-ms: -1: exactly one POST (v1.3: one embed-v2 of
// the request's one prompt), whatever the client.
func TestServiceConfigDoesNotReplayAnUpstreamCall(t *testing.T) {
	e := newStack(t)
	req := e.faultRequest(t)
	ctx := fresh(testCtx(t, 30*time.Second))
	post := startMatch()

	for _, c := range []struct {
		name   string
		client classifyv1.ClassifyServiceClient
	}{{"without service config", e.plainClient(t)}, {"with service config", e.client(t)}} {
		e.clearFaults(t)
		e.clearJournal(t)
		e.addFault(t, fault{Match: post, Times: 1, Action: map[string]any{"type": "status", "status": 500}})
		_, err := streamPages(ctx, c.client, req)
		if status.Code(err) != codes.Unavailable || classify.UpstreamHTTPStatus(err) != 500 {
			t.Fatalf("%s: upstream 500: want UNAVAILABLE with http_status 500, got %s", c.name, describe(err))
		}
		if posts, _ := classifyCalls(e.journal(t)); len(posts) != 1 {
			t.Errorf("%s: journal shows %d POSTs; want 1 (each POST is a billed classification)", c.name, len(posts))
		}
	}
}

// A failure the gateway already retried upstream (a persistent 503) comes with
// grpc-retry-pushback-ms: -1, so the service config does not multiply the
// upstream calls (each POST is a billed classification).
func TestGatewayRetriesAreNotMultipliedByTheClient(t *testing.T) {
	e := newStack(t)
	req := e.faultRequest(t)
	ctx := fresh(testCtx(t, 30*time.Second))
	post := startMatch()

	e.addFault(t, fault{Match: post, Times: -1, Action: map[string]any{"type": "status", "status": 503}})
	_, err := streamPages(ctx, e.plainClient(t), req)
	if status.Code(err) != codes.Unavailable || classify.UpstreamHTTPStatus(err) != 503 {
		t.Fatalf("upstream 503 on every attempt: want UNAVAILABLE with http_status 503, got %s", describe(err))
	}
	gatewayAttempts, _ := classifyCalls(e.journal(t))
	attempts := len(gatewayAttempts)
	if attempts < 2 {
		t.Fatalf("the gateway should retry a 503 itself; journal shows %d POSTs", attempts)
	}

	e.clearJournal(t)
	_, err = classify.StreamAll(ctx, e.client(t), req, func(*classifyv1.ClassifyResponse) error { return nil })
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE, got %s", describe(err))
	}
	posts, _ := classifyCalls(e.journal(t))
	if len(posts) != attempts {
		t.Errorf("with the service config: %d POSTs, want only the gateway's own %d", len(posts), attempts)
	}
}

// A connection reset on a page fetch (v1.3: a video retrieval) is retried inside
// the gateway: the caller gets every page, once, and sees no error.
func TestUpstreamResetMidStreamIsRetried(t *testing.T) {
	e := newStack(t)
	// Videos no other test asks about: on v1.3 the faulted stream is the first to fetch
	// their segments, so the reset is met (and the expected pages come after it).
	req := ownQuestion(t, demoRequest(e.unsharedVideos(t, testVideos), testPageLimit))
	var want []*classifyv1.GetClassifyPageResponse
	if !isV13() {
		want = e.expectedPages(t, req)
	}
	e.clearJournal(t)
	e.addFault(t, fault{Match: fetchMatch(), Times: 1,
		Action: map[string]any{"type": "reset"}})

	got, err := streamPages(fresh(testCtx(t, 30*time.Second)), e.client(t), req)
	if err != nil {
		t.Fatalf("Classify with one upstream reset: %s", describe(err))
	}
	journal := e.journal(t)
	e.clearFaults(t)
	if isV13() {
		want = e.expectedPages(t, req)
	}
	if len(want) < 3 {
		t.Fatalf("the expected answer has %d pages; the test needs at least 3", len(want))
	}
	if len(got) != len(want) {
		t.Fatalf("got %d pages, want %d", len(got), len(want))
	}
	for i := range got {
		assertSamePage(t, fmt.Sprintf("page %d", i+1), fromStream(got[i]), fromPage(want[i]))
	}
	_, gets := classifyCalls(journal)
	wantGets := len(want) // v1.2: pages 2.. by token, plus the retry
	if isV13() {
		wantGets = len(req.GetVideoIds()) + 1 // every video, plus the retry
	}
	resets := 0
	for _, g := range gets {
		if g.Fault == "reset" {
			resets++
		}
	}
	if len(gets) != wantGets || resets != 1 {
		t.Errorf("want %d upstream fetches, one of them reset; journal: %+v", wantGets, gets)
	}
}

// The shipped gateway shares work (docs/clients.md): the same question asked again is
// answered from the page cache, every page as the first caller got it, at no upstream
// request, and so is GetClassifyPage for one of its tokens. With `cache-control:
// no-cache` the question goes to the upstream again (v1.2: a new classification).
func TestRepeatedCallIsServedFromTheCache(t *testing.T) {
	e := newStack(t)
	req := ownQuestion(t, demoRequest(e.someVideos(t, testVideos), testPageLimit))
	client := e.client(t)
	ctx := testCtx(t, 30*time.Second)

	first, err := streamPages(ctx, client, req)
	if err != nil || len(first) < 3 {
		t.Fatalf("Classify: %d pages (want at least 3), %s", len(first), describe(err))
	}
	if posts, _ := classifyCalls(e.journal(t)); len(posts) == 0 {
		t.Fatal("the first call of the question reached no upstream: it is not the test's own")
	}

	e.clearJournal(t)
	again, err := streamPages(ctx, client, req)
	if err != nil {
		t.Fatalf("Classify, again: %s", describe(err))
	}
	if len(again) != len(first) {
		t.Fatalf("the repeat gave %d pages, the first call %d", len(again), len(first))
	}
	for i := range again {
		if !proto.Equal(again[i], first[i]) {
			t.Errorf("page %d of the repeat differs from the first call's (tokens included):\n%v\n%v", i+1, again[i], first[i])
		}
	}
	page2, err := client.GetClassifyPage(ctx, &classifyv1.GetClassifyPageRequest{PageToken: first[0].GetPageInfo().GetNextPageToken()})
	if err != nil {
		t.Fatalf("GetClassifyPage(page 2): %s", describe(err))
	}
	assertSamePage(t, "page 2 by token", fromPage(page2), fromStream(first[1]))
	if posts, gets := classifyCalls(e.journal(t)); len(posts)+len(gets) != 0 {
		t.Errorf("the repeat cost %d starts and %d fetches upstream; want none (the page cache)", len(posts), len(gets))
	}

	if isV13() {
		return // v1.3 computes a no-cache call anew from its embedding caches (docs/design.md)
	}
	e.clearJournal(t)
	renewed, err := streamPages(fresh(ctx), client, req)
	if err != nil || len(renewed) != len(first) {
		t.Fatalf("Classify with no-cache: %d pages, %s", len(renewed), describe(err))
	}
	if posts, gets := classifyCalls(e.journal(t)); len(posts) != 1 || len(gets) != len(first)-1 {
		t.Errorf("no-cache: %d POST and %d GET; want a new classification, 1 and %d", len(posts), len(gets), len(first)-1)
	}
	if renewed[0].GetPageInfo().GetNextPageToken() == first[0].GetPageInfo().GetNextPageToken() {
		t.Error("no-cache gave the cached chain's tokens, not a new classification's")
	}
}

// Identical calls at the same time share one upstream chain (coalescing): one start
// upstream, and every caller gets every page.
func TestConcurrentIdenticalCallsShareOneChain(t *testing.T) {
	const callers = 3
	e := newStack(t)
	req := e.faultRequest(t) // the test's own question; one upstream start on either backend
	// A slow start, so that every caller arrives while the first one's is in flight.
	e.addFault(t, fault{Match: startMatch(), Times: -1,
		Action: map[string]any{"type": "latency", "ms": 700}})
	client := e.client(t)
	ctx := testCtx(t, 30*time.Second)

	type result struct {
		pages []*classifyv1.ClassifyResponse
		err   error
	}
	results := make(chan result, callers)
	for range callers {
		go func() {
			pages, err := streamPages(ctx, client, req)
			results <- result{pages, err}
		}()
	}
	var got [][]*classifyv1.ClassifyResponse
	for range callers {
		r := <-results
		if r.err != nil || len(r.pages) == 0 {
			t.Fatalf("a caller got %d pages, %s", len(r.pages), describe(r.err))
		}
		got = append(got, r.pages)
	}
	for _, pages := range got[1:] {
		if len(pages) != len(got[0]) {
			t.Fatalf("callers got %d and %d pages", len(pages), len(got[0]))
		}
		for i := range pages {
			if !proto.Equal(pages[i], got[0][i]) {
				t.Errorf("page %d differs between two callers of one chain", i+1)
			}
		}
	}
	if posts, _ := classifyCalls(e.journal(t)); len(posts) != 1 {
		t.Errorf("%d identical calls at once started %d classifications upstream; want 1: %v", callers, len(posts), posts)
	}
}
