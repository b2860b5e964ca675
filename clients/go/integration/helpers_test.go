//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/classify-gateway/classify-gateway/clients/go/classify"
	classifyv1 "github.com/classify-gateway/classify-gateway/clients/go/gen/classify/v1"
)

// stackEnv is the running emulator + gateway that tools/stack.py started.
type stackEnv struct {
	addr   string // gateway host:port
	emuURL string // http://host:port, no API version
	apiKey string
	http   *http.Client
}

// upstreamVersion is where the tests themselves read the emulator's corpus and, on
// v1.2, its own classify answers (the corpus is the same under /v1.3).
const upstreamVersion = "/v1.2"

// backend is the gateway's backend, as tools/stack.py exports it: "v1.2" (the
// default) or "v1.3". The suite runs against either (make test-go, make test-go-v13);
// a test checks the backend's own upstream calls and numbers where they differ.
func backend() string {
	if b := os.Getenv("CLASSIFY_GATEWAY_UPSTREAM_API"); b != "" {
		return b
	}
	return "v1.2"
}

func isV13() bool { return backend() == "v1.3" }

// wantScoring is the scoring every response of this backend carries.
func wantScoring() classifyv1.Scoring {
	if isV13() {
		return classifyv1.Scoring_SCORING_EMBEDDINGS_V1_3
	}
	return classifyv1.Scoring_SCORING_CLASSIFY_V1_2
}

// skipOn skips the test on the given backend, saying why it cannot mean anything there.
func skipOn(t *testing.T, api, why string) {
	t.Helper()
	if backend() == api {
		t.Skipf("not run against a %s gateway: %s", api, why)
	}
}

// newStack returns the running stack, with the emulator's faults and journal
// cleared, and its faults cleared again when the test ends. It fails the test
// (never skips) when the stack's variables are missing.
//
// The gateway runs the shipped defaults: coalescing, the page cache and, on v1.3, the
// embedding caches are on, for the whole suite. So the emulator is not reset between
// tests: it keeps its classifications, as the real upstream keeps them for their
// tokens' life, so that a page the gateway cached in an earlier test still resumes
// upstream. A test that counts upstream requests or needs a fault met asks its own
// question (ownQuestion) and sends `cache-control: no-cache` (fresh).
func newStack(t *testing.T) *stackEnv {
	t.Helper()
	e := &stackEnv{
		addr:   os.Getenv("CLASSIFY_GATEWAY_ADDR"),
		emuURL: strings.TrimRight(os.Getenv("CLASSIFY_EMULATOR_URL"), "/"),
		apiKey: os.Getenv("CLASSIFY_EMULATOR_API_KEY"),
		http:   &http.Client{Timeout: 30 * time.Second},
	}
	if e.addr == "" {
		t.Fatal("CLASSIFY_GATEWAY_ADDR is not set: these integration tests need a running gateway and emulator. " +
			"Run them with `make test-go` from the repository root, or " +
			"`.venv/bin/python -m tools.stack -- make -C clients/go test`.")
	}
	if e.emuURL == "" || e.apiKey == "" {
		t.Fatal("CLASSIFY_EMULATOR_URL and CLASSIFY_EMULATOR_API_KEY must be set with CLASSIFY_GATEWAY_ADDR (tools/stack.py sets all of them)")
	}
	if b := backend(); b != "v1.2" && b != "v1.3" {
		t.Fatalf("CLASSIFY_GATEWAY_UPSTREAM_API=%q: want v1.2 or v1.3", b)
	}
	e.clearFaults(t)
	e.clearJournal(t)
	t.Cleanup(func() { e.admin(t, http.MethodDelete, "/_emulator/faults", nil, nil) })
	return e
}

// fresh adds the call metadata `cache-control: no-cache` (docs/clients.md): the call
// reads no stored page and joins no chain started before it; it goes to the upstream
// and refreshes the page cache. v1.3's embedding caches still answer it (a text's
// embedding and a video's segments do not change), so on v1.3 a test whose upstream
// calls must happen also asks its own question (ownQuestion).
func fresh(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "cache-control", "no-cache")
}

// ownQuestion makes req a question no other test of the suite asks: every prompt
// carries the test's name. Nothing the gateway shares (a chain, a cached page, v1.3's
// prompt embeddings) can then answer it from another test's calls.
func ownQuestion(t *testing.T, req *classifyv1.ClassifyRequest) *classifyv1.ClassifyRequest {
	t.Helper()
	for _, c := range req.GetClasses() {
		for i, p := range c.GetPrompts() {
			c.Prompts[i] = fmt.Sprintf("%s (%s)", p, t.Name())
		}
	}
	return req
}

// client dials the gateway with the project's service config (classify.Dial).
func (e *stackEnv) client(t *testing.T) classifyv1.ClassifyServiceClient {
	t.Helper()
	conn, err := classify.Dial(e.addr)
	if err != nil {
		t.Fatalf("dial %s: %v", e.addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return classifyv1.NewClassifyServiceClient(conn)
}

// plainClient dials without a service config: grpc-go then never retries.
func (e *stackEnv) plainClient(t *testing.T) classifyv1.ClassifyServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", e.addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return classifyv1.NewClassifyServiceClient(conn)
}

func (e *stackEnv) do(t *testing.T, method, path string, body any, withKey bool) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.emuURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if withKey {
		req.Header.Set("x-api-key", e.apiKey)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// admin calls the emulator's admin API and decodes the JSON answer into out.
func (e *stackEnv) admin(t *testing.T, method, path string, body, out any) {
	t.Helper()
	code, b := e.do(t, method, path, body, false)
	if code/100 != 2 {
		t.Fatalf("emulator %s %s: HTTP %d: %s", method, path, code, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("emulator %s %s: %v: %s", method, path, err, b)
		}
	}
}

// upstream calls the emulator's public API (as the gateway does) and decodes
// the JSON answer into out.
func (e *stackEnv) upstream(t *testing.T, method, path string, body, out any) {
	t.Helper()
	code, b := e.do(t, method, upstreamVersion+path, body, true)
	if code != http.StatusOK {
		t.Fatalf("upstream %s %s: HTTP %d: %s", method, path, code, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("upstream %s %s: %v: %s", method, path, err, b)
		}
	}
}

// fault is one emulator fault rule.
type fault struct {
	Match  faultMatch     `json:"match"`
	After  int            `json:"after"`
	Times  int            `json:"times"` // -1: forever
	Action map[string]any `json:"action"`
}

type faultMatch struct {
	Method string `json:"method"`
	Path   string `json:"path"`
}

func (e *stackEnv) addFault(t *testing.T, f fault) {
	t.Helper()
	e.admin(t, http.MethodPost, "/_emulator/faults", f, nil)
}

func (e *stackEnv) clearFaults(t *testing.T) {
	t.Helper()
	e.admin(t, http.MethodDelete, "/_emulator/faults", nil, nil)
}

// journalEntry is one request the emulator received.
type journalEntry struct {
	Method       string  `json:"method"`
	Path         string  `json:"path"`
	Status       int     `json:"status"` // 0: the client left before a status was sent
	Fault        string  `json:"fault"`
	Completed    bool    `json:"completed"`    // the whole response was sent
	Disconnected bool    `json:"disconnected"` // the client went away before the response finished
	T            float64 `json:"t"`
}

func (e *stackEnv) journal(t *testing.T) []journalEntry {
	t.Helper()
	var j struct {
		Requests []journalEntry `json:"requests"`
	}
	e.admin(t, http.MethodGet, "/_emulator/requests", nil, &j)
	return j.Requests
}

// clearJournal empties the emulator's request journal but keeps its state
// (the reset endpoint would also drop classifications and their tokens).
func (e *stackEnv) clearJournal(t *testing.T) {
	t.Helper()
	e.admin(t, http.MethodDelete, "/_emulator/requests", nil, nil)
}

// classifyCalls returns the journal's upstream calls of the gateway's backend, in two
// kinds. v1.2: classification starts (POST /classify, POST /classify/bulk) and page
// fetches (GET /classify/{token}). v1.3: prompt embeddings (POST /v1.3/embed-v2, one
// per distinct prompt, the first calls of a classification) and video retrievals (GET
// /v1.3/indexes/{id}/videos/{id}, one per video); listings are in neither.
func classifyCalls(j []journalEntry) (posts, gets []journalEntry) {
	if isV13() {
		for _, r := range j {
			switch {
			case r.Method == http.MethodPost && r.Path == "/v1.3/embed-v2":
				posts = append(posts, r)
			case r.Method == http.MethodGet && strings.HasPrefix(r.Path, "/v1.3/indexes/") && strings.Contains(r.Path, "/videos/"):
				gets = append(gets, r)
			}
		}
		return posts, gets
	}
	for _, r := range j {
		p := strings.TrimPrefix(r.Path, upstreamVersion)
		switch {
		case r.Method == http.MethodPost && (p == "/classify" || p == "/classify/bulk"):
			posts = append(posts, r)
		case r.Method == http.MethodGet && strings.HasPrefix(p, "/classify/"):
			gets = append(gets, r)
		}
	}
	return posts, gets
}

// startMatch matches the first upstream call of a classification: v1.2's POST
// /classify (and /classify/bulk), v1.3's POST /v1.3/embed-v2.
func startMatch() faultMatch {
	if isV13() {
		return faultMatch{Method: "POST", Path: "/v1.3/embed-v2"}
	}
	return faultMatch{Method: "POST", Path: "/classify"}
}

// fetchMatch matches the calls classifyCalls counts as gets: v1.2's page fetches by
// token, v1.3's video retrievals (not the listings, whose paths end in /videos).
func fetchMatch() faultMatch {
	if isV13() {
		return faultMatch{Method: "GET", Path: "/videos/"}
	}
	return faultMatch{Method: "GET", Path: "/classify/"}
}

// corpus lists the emulator's indexes and their videos, through the public API.
func (e *stackEnv) corpus(t *testing.T) (indexes []string, videos map[string][]string) {
	t.Helper()
	type list struct {
		Data []struct {
			ID string `json:"_id"`
		} `json:"data"`
	}
	var idx list
	e.upstream(t, http.MethodGet, "/indexes", nil, &idx)
	videos = map[string][]string{}
	for _, ix := range idx.Data {
		var vids list
		e.upstream(t, http.MethodGet, "/indexes/"+ix.ID+"/videos", nil, &vids)
		indexes = append(indexes, ix.ID)
		for _, v := range vids.Data {
			videos[ix.ID] = append(videos[ix.ID], v.ID)
		}
	}
	if len(indexes) == 0 {
		t.Fatal("the emulator lists no index")
	}
	return indexes, videos
}

// someVideos returns n video ids of the demo corpus (from as few indexes as possible).
func (e *stackEnv) someVideos(t *testing.T, n int) []string {
	t.Helper()
	indexes, videos := e.corpus(t)
	var out []string
	for _, ix := range indexes {
		for _, v := range videos[ix] {
			if len(out) < n && !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	if len(out) < n {
		t.Fatalf("the emulator has %d videos, the test needs %d", len(out), n)
	}
	return out
}

// unsharedVideos returns n video ids that no other test of the suite asks about: from
// the last indexes of the corpus, while someVideos takes the first index's and
// TestClassifyIndex classifies the first index. On v1.3 the gateway has not fetched
// their segments yet (its caches keep them for the whole run), so a fault on their
// retrieval is met.
func (e *stackEnv) unsharedVideos(t *testing.T, n int) []string {
	t.Helper()
	indexes, videos := e.corpus(t)
	shared := append(slices.Clone(videos[indexes[0]]), e.someVideos(t, testVideos)...)
	var out []string
	for i := len(indexes) - 1; i > 0 && len(out) < n; i-- {
		for _, v := range videos[indexes[i]] {
			if len(out) < n && !slices.Contains(out, v) && !slices.Contains(shared, v) {
				out = append(out, v)
			}
		}
	}
	if len(out) < n {
		t.Fatalf("the emulator has %d videos outside the first index, the test needs %d", len(out), n)
	}
	return out
}

// demoRequest is a multi-page classification of the given videos: every
// field set, low thresholds so that every video is listed.
func demoRequest(videos []string, pageLimit int32) *classifyv1.ClassifyRequest {
	return &classifyv1.ClassifyRequest{
		VideoIds: videos,
		Options: []classifyv1.SearchOption{
			classifyv1.SearchOption_SEARCH_OPTION_VISUAL,
			classifyv1.SearchOption_SEARCH_OPTION_CONVERSATION,
		},
		Classes: []*classifyv1.ClassDefinition{
			{Name: "Dance", Prompts: []string{"dance tutorial", "dance group"}},
			{Name: "Cooking", Prompts: []string{"cooking tutorial", "recipe"}},
			{Name: "Sports", Prompts: []string{"sports highlights"}},
			{Name: "News", Prompts: []string{"news report"},
				Options: []classifyv1.SearchOption{classifyv1.SearchOption_SEARCH_OPTION_CONVERSATION}},
		},
		IncludeClips:      true,
		ShowDetailedScore: true,
		Threshold: &classifyv1.Threshold{
			MinVideoScore:    proto.Float64(0),
			MinClipScore:     proto.Float64(0),
			MinDurationRatio: proto.Float64(0.01),
		},
		PageLimit: pageLimit,
	}
}

// faultRequest is the small classification of the fault tests: 3 videos and, on v1.3,
// one class with one prompt, so that on either backend a classification starts with
// exactly one upstream call (v1.2's POST /classify, v1.3's embed-v2 of its one prompt).
// It is the test's own question (ownQuestion), and the tests send it with fresh: the
// call reaches the upstream, whatever the suite asked before.
func (e *stackEnv) faultRequest(t *testing.T) *classifyv1.ClassifyRequest {
	t.Helper()
	req := demoRequest(e.someVideos(t, 3), testPageLimit)
	if isV13() {
		req.Classes = req.Classes[:1]
		req.Classes[0].Prompts = req.Classes[0].Prompts[:1]
	}
	return ownQuestion(t, req)
}

// distinctPrompts is how many embed-v2 calls a v1.3 classification of req makes.
func distinctPrompts(req *classifyv1.ClassifyRequest) int {
	seen := map[string]bool{}
	for _, c := range req.GetClasses() {
		for _, p := range c.GetPrompts() {
			seen[p] = true
		}
	}
	return len(seen)
}

var searchOptionJSON = map[classifyv1.SearchOption]string{
	classifyv1.SearchOption_SEARCH_OPTION_VISUAL:        "visual",
	classifyv1.SearchOption_SEARCH_OPTION_CONVERSATION:  "conversation",
	classifyv1.SearchOption_SEARCH_OPTION_TEXT_IN_VIDEO: "text_in_video",
}

var conversationOptionJSON = map[classifyv1.ConversationOption]string{
	classifyv1.ConversationOption_CONVERSATION_OPTION_SEMANTIC:    "semantic",
	classifyv1.ConversationOption_CONVERSATION_OPTION_EXACT_MATCH: "exact_match",
}

func optionsJSON(opts []classifyv1.SearchOption) []string {
	out := make([]string, len(opts))
	for i, o := range opts {
		out[i] = searchOptionJSON[o]
	}
	return out
}

// upstreamBody is the upstream JSON body documented for req (see the proto's
// field comments): the same request sent straight to the emulator.
func upstreamBody(req *classifyv1.ClassifyRequest) (path string, body map[string]any) {
	body = map[string]any{"options": optionsJSON(req.GetOptions())}
	path = "/classify"
	if req.GetIndexId() != "" {
		path = "/classify/bulk"
		body["index_id"] = req.GetIndexId()
	} else {
		body["video_ids"] = req.GetVideoIds()
	}
	if c := req.GetConversationOption(); c != 0 {
		body["conversation_option"] = conversationOptionJSON[c]
	}
	var classes []map[string]any
	for _, c := range req.GetClasses() {
		m := map[string]any{"name": c.GetName(), "prompts": c.GetPrompts()}
		if len(c.GetOptions()) > 0 {
			m["options"] = optionsJSON(c.GetOptions())
		}
		if co := c.GetConversationOption(); co != 0 {
			m["conversation_option"] = conversationOptionJSON[co]
		}
		classes = append(classes, m)
	}
	body["classes"] = classes
	if req.GetPageLimit() != 0 {
		body["page_limit"] = req.GetPageLimit()
	}
	if req.GetIncludeClips() {
		body["include_clips"] = true
	}
	if req.GetShowDetailedScore() {
		body["show_detailed_score"] = true
	}
	if th := req.GetThreshold(); th != nil {
		m := map[string]any{}
		if th.MinVideoScore != nil {
			m["min_video_score"] = th.GetMinVideoScore()
		}
		if th.MinClipScore != nil {
			m["min_clip_score"] = th.GetMinClipScore()
		}
		if th.MinDurationRatio != nil {
			m["min_duration_ratio"] = th.GetMinDurationRatio()
		}
		body["threshold"] = m
	}
	return path, body
}

// expectedPages is the answer the gateway must give to req, each page with the
// backend's scoring. v1.2: the emulator's own answer (upstreamPages). v1.3 has no
// classify upstream to ask: the pages the gateway streams for req on a connection of
// their own (checked for their scoring and page numbers here), computed for this call
// (fresh: not read from the page cache, which may hold what the test itself was
// streamed), so that each test checks that its way of getting them (resuming, paging
// by hand, after a fault...) gives the same pages.
func (e *stackEnv) expectedPages(t *testing.T, req *classifyv1.ClassifyRequest) []*classifyv1.GetClassifyPageResponse {
	t.Helper()
	if !isV13() {
		pages := e.upstreamPages(t, req)
		for _, p := range pages {
			p.Scoring = wantScoring()
		}
		return pages
	}
	got, err := streamPages(fresh(testCtx(t, 30*time.Second)), e.plainClient(t), req)
	if err != nil {
		t.Fatalf("Classify (the expected pages): %s", describe(err))
	}
	var pages []*classifyv1.GetClassifyPageResponse
	for i, p := range got {
		if p.GetScoring() != wantScoring() || p.GetPageNumber() != int32(i+1) {
			t.Fatalf("expected page %d: page_number %d, scoring %v (want %v)", i+1, p.GetPageNumber(), p.GetScoring(), wantScoring())
		}
		pages = append(pages, &classifyv1.GetClassifyPageResponse{Data: p.GetData(), PageInfo: p.GetPageInfo(), Scoring: p.GetScoring()})
	}
	if len(pages) == 0 {
		t.Fatal("the gateway streamed no page")
	}
	return pages
}

// upstreamPages runs req straight against the emulator and follows
// next_page_token to the last page: the expected answer.
func (e *stackEnv) upstreamPages(t *testing.T, req *classifyv1.ClassifyRequest) []*classifyv1.GetClassifyPageResponse {
	t.Helper()
	path, body := upstreamBody(req)
	var raw json.RawMessage
	e.upstream(t, http.MethodPost, path, body, &raw)
	var pages []*classifyv1.GetClassifyPageResponse
	for {
		page := &classifyv1.GetClassifyPageResponse{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, page); err != nil {
			t.Fatalf("upstream page %d does not match the contract: %v\n%s", len(pages)+1, err, raw)
		}
		pages = append(pages, page)
		next := page.GetPageInfo().GetNextPageToken()
		if next == "" {
			return pages
		}
		if len(pages) > 1000 {
			t.Fatal("upstream paging does not end")
		}
		raw = nil
		e.upstream(t, http.MethodGet, "/classify/"+next, nil, &raw)
	}
}

// streamPages collects a Classify stream through the generated stub.
func streamPages(ctx context.Context, client classifyv1.ClassifyServiceClient, req *classifyv1.ClassifyRequest) ([]*classifyv1.ClassifyResponse, error) {
	stream, err := client.Classify(ctx, req)
	if err != nil {
		return nil, err
	}
	var pages []*classifyv1.ClassifyResponse
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return pages, nil
		}
		if err != nil {
			return pages, err
		}
		pages = append(pages, msg)
	}
}

// comparable strips what differs between two runs of the same classification
// (tokens, expiry) and keeps every data field, the scoring, limit_per_page and
// total_results.
func comparable(data []*classifyv1.VideoClassification, info *classifyv1.PageInfo, scoring classifyv1.Scoring) *classifyv1.GetClassifyPageResponse {
	out := &classifyv1.GetClassifyPageResponse{Data: data, Scoring: scoring}
	if info != nil {
		out.PageInfo = &classifyv1.PageInfo{LimitPerPage: info.GetLimitPerPage(), TotalResults: info.GetTotalResults()}
	}
	return proto.CloneOf(out)
}

func fromStream(p *classifyv1.ClassifyResponse) *classifyv1.GetClassifyPageResponse {
	return comparable(p.GetData(), p.GetPageInfo(), p.GetScoring())
}

func fromPage(p *classifyv1.GetClassifyPageResponse) *classifyv1.GetClassifyPageResponse {
	return comparable(p.GetData(), p.GetPageInfo(), p.GetScoring())
}

// assertSamePage fails with the first differing line of the two pages.
func assertSamePage(t *testing.T, what string, got, want *classifyv1.GetClassifyPageResponse) {
	t.Helper()
	if proto.Equal(got, want) {
		return
	}
	opts := protojson.MarshalOptions{Multiline: true, UseProtoNames: true}
	g, w := strings.Split(opts.Format(got), "\n"), strings.Split(opts.Format(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			lo := max(0, i-3)
			t.Fatalf("%s differs at line %d:\n  got:  %s\n  want: %s\ncontext (want):\n%s", what, i+1, gl, wl, strings.Join(w[lo:min(len(w), i+4)], "\n"))
		}
	}
	t.Fatalf("%s differs (same text, different values):\n%v\n%v", what, got, want)
}

func videoIDs(pages ...[]*classifyv1.VideoClassification) []string {
	var ids []string
	for _, p := range pages {
		for _, v := range p {
			ids = append(ids, v.GetVideoId())
		}
	}
	return ids
}

func describe(err error) string {
	info, bad, retry := classify.ErrorDetails(err)
	return fmt.Sprintf("%v (ErrorInfo %v, BadRequest %v, RetryInfo %v)", err, info, bad, retry)
}

// assertAbandoned fails for every upstream request the emulator finished
// answering: each must have been abandoned (client gone) by the gateway.
func assertAbandoned(t *testing.T, calls []journalEntry, why string) {
	t.Helper()
	for _, c := range calls {
		if c.Completed || !c.Disconnected {
			t.Errorf("%s: %+v", why, c)
		}
	}
}
