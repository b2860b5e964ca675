package com.classifygateway.client;

import static com.classifygateway.client.Stack.action;
import static com.classifygateway.client.Stack.fault;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import com.classifygateway.classify.v1.ClassDefinition;
import com.classifygateway.classify.v1.ClassResult;
import com.classifygateway.classify.v1.ClassifyRequest;
import com.classifygateway.classify.v1.ClassifyResponse;
import com.classifygateway.classify.v1.ClassifyServiceGrpc;
import com.classifygateway.classify.v1.GetClassifyPageRequest;
import com.classifygateway.classify.v1.GetClassifyPageResponse;
import com.classifygateway.classify.v1.Scoring;
import com.classifygateway.classify.v1.SearchOption;
import com.classifygateway.classify.v1.Threshold;
import com.classifygateway.classify.v1.VideoClassification;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.util.JsonFormat;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ClientStreamTracer;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;

/**
 * The gateway's contract, checked through the generated Java stubs against the real gateway
 * and the upstream emulator started by tools/stack.py. The suite runs against either backend
 * (make test-java, make test-java-v13; CLASSIFY_GATEWAY_UPSTREAM_API): on v1.2 the emulator's
 * own classify answers are the oracle; v1.3 has no classify upstream to ask, so the pages the
 * gateway streams for the same request are, and faults go to the v1.3 calls (embed-v2, video
 * retrievals).
 *
 * <p>The gateway runs the shipped defaults: coalescing, the page cache and, on v1.3, the
 * embedding caches are on for the whole suite. So each test asks its own question (every prompt
 * of {@link #request()} carries the test's name): no chain or cached page of another test can
 * answer it. A test that counts upstream requests or needs a fault met also sends {@code
 * cache-control: no-cache} ({@link #fresh}), so that it does not read what an earlier call of
 * its own cached. Each test starts with no faults and an empty journal; the emulator keeps its
 * classifications between tests, as the real upstream keeps them for their tokens' life, so that
 * a page the gateway cached still resumes upstream.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ClassifyGatewayIT {

  /** Videos per page; with VIDEO_COUNT videos this gives several pages. */
  private static final int PAGE_LIMIT = 2;
  private static final int VIDEO_COUNT = 7;
  private static final Duration DEADLINE = Duration.ofSeconds(30);
  /** The gateway's upstream attempts per RPC (classify_gateway/config.py retry_max_attempts). */
  private static final int GATEWAY_ATTEMPTS =
      Integer.parseInt(envOr("CLASSIFY_GATEWAY_RETRY_MAX_ATTEMPTS", "4"));

  private Stack stack;
  private ManagedChannel channel;
  private ClassifyClient client;
  private ClassifyServiceGrpc.ClassifyServiceBlockingStub stub;
  /**
   * {@link #stub} with the call metadata {@code cache-control: no-cache} (docs/clients.md): the
   * call reads no stored page and joins no chain started before it; it goes upstream and
   * refreshes the page cache. v1.3's embedding caches still answer it (a text's embedding and a
   * video's segments do not change), which is why the prompts are the test's own as well.
   */
  private ClassifyServiceGrpc.ClassifyServiceBlockingStub fresh;
  private List<String> videos;
  private boolean v13;
  /** The running test's method name: every prompt carries it (own questions). */
  private String testName = "";

  @BeforeAll
  void connect() {
    stack = Stack.fromEnv();
    v13 = stack.v13();
    // The channel every Java caller should build: shipped service config + retries.
    channel = ClassifyClient.channelBuilder(stack.gatewayAddr).build();
    client = ClassifyClient.of(channel);
    stub = ClassifyServiceGrpc.newBlockingStub(channel);
    Metadata noCache = new Metadata();
    noCache.put(Metadata.Key.of("cache-control", Metadata.ASCII_STRING_MARSHALLER), "no-cache");
    fresh = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(noCache));
    stack.reset();
    videos = pickVideos();
    // One call that reaches no upstream (a missing page_token), so that the channel is
    // connected and gRPC's classes loaded before any test times a call of its own.
    assertThrows(StatusRuntimeException.class,
        () -> stub.getClassifyPage(GetClassifyPageRequest.getDefaultInstance()));
  }

  @AfterAll
  void disconnect() throws InterruptedException {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @BeforeEach
  void clearEmulator(TestInfo info) {
    testName = info.getTestMethod().map(m -> m.getName()).orElse(info.getDisplayName());
    stack.clearFaults();
    stack.clearJournal();
  }

  @AfterEach
  void clearFaults() {
    stack.clearFaults();
  }

  // ---- the request under test, in both shapes ----------------------------------------

  private List<String> pickVideos() {
    List<String> indexes = stack.indexIds();
    assertTrue(indexes.size() >= 1, "the emulator's demo corpus has no index");
    List<String> out = new ArrayList<>();
    for (String index : indexes) {
      for (String v : stack.videoIds(index)) {
        if (out.size() < VIDEO_COUNT && !out.contains(v)) {
          out.add(v);
        }
      }
    }
    assertTrue(out.size() >= 5, "the emulator's demo corpus has too few videos: " + out);
    return out;
  }

  private ClassifyRequest.Builder request() {
    return ClassifyRequest.newBuilder()
        .addAllVideoIds(videos)
        .addOptions(SearchOption.SEARCH_OPTION_VISUAL)
        .addOptions(SearchOption.SEARCH_OPTION_CONVERSATION)
        .addClasses(
            ClassDefinition.newBuilder()
                .setName("Dance")
                .addPrompts(own("dance tutorial"))
                .addPrompts(own("dance group")))
        .addClasses(ClassDefinition.newBuilder().setName("Cooking").addPrompts(own("cooking tutorial")))
        .addClasses(ClassDefinition.newBuilder().setName("Sports").addPrompts(own("sports match")))
        .addClasses(ClassDefinition.newBuilder().setName("News").addPrompts(own("news report")))
        .setPageLimit(PAGE_LIMIT)
        .setIncludeClips(true)
        .setShowDetailedScore(true)
        .setThreshold(
            Threshold.newBuilder()
                .setMinVideoScore(0)
                .setMinClipScore(0)
                .setMinDurationRatio(0.01));
  }

  /** A prompt of the running test's own, so that the question is asked by no other test. */
  private String own(String prompt) {
    return prompt + " (" + testName + ")";
  }

  /**
   * The request of the fault tests: on v1.3 one class of one prompt, so that on either backend
   * a classification starts with exactly one upstream call (v1.2's POST /classify, v1.3's
   * embed-v2 of its prompt).
   */
  private ClassifyRequest faultRequest() {
    ClassifyRequest.Builder b = request();
    if (v13) {
      b.clearClasses().addClasses(
          ClassDefinition.newBuilder().setName("Dance").addPrompts(own("dance tutorial")));
    }
    return b.build();
  }

  /** {@link ClassifyClient#streamAll} with {@code cache-control: no-cache} ({@link #fresh}). */
  private String streamFresh(ClassifyRequest request, Duration deadline,
      Consumer<ClassifyResponse> onPage) {
    return ClassifyClient.streamAll(
        fresh.withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS), request, onPage);
  }

  /** How many embed-v2 calls a v1.3 classification of the request makes. */
  private static int distinctPrompts(ClassifyRequest r) {
    return (int) r.getClassesList().stream()
        .flatMap(c -> c.getPromptsList().stream()).distinct().count();
  }

  /** The scoring every response of this backend carries. */
  private Scoring wantScoring() {
    return v13 ? Scoring.SCORING_EMBEDDINGS_V1_3 : Scoring.SCORING_CLASSIFY_V1_2;
  }

  /** Path part matching the first upstream call of a classification (fault rules). */
  private String startPath() {
    return v13 ? "/v1.3/embed-v2" : "/classify";
  }

  /**
   * The expected pages of a request: on v1.2 the emulator's own answer (upstreamPages); on
   * v1.3 the pages the gateway streams for it (each with v1.3's scoring), computed for this call
   * (no-cache: not read from the page cache, which may hold what the test was streamed), which
   * each test then compares with what its own way of getting them gives.
   */
  private List<GetClassifyPageResponse> expectedPages(ClassifyRequest r) {
    if (!v13) {
      return upstreamPages(r);
    }
    List<GetClassifyPageResponse> out = new ArrayList<>();
    List<ClassifyResponse> streamed = new ArrayList<>();
    streamFresh(r, DEADLINE, streamed::add);
    for (ClassifyResponse p : streamed) {
      assertEquals(wantScoring(), p.getScoring(), "scoring of an expected page");
      out.add(GetClassifyPageResponse.newBuilder().addAllData(p.getDataList())
          .setPageInfo(p.getPageInfo()).setScoring(p.getScoring()).build());
    }
    return out;
  }

  /** The same request as upstream JSON, written by hand (not by the gateway's translator). */
  private JsonObject upstreamBody() {
    JsonObject body = new JsonObject();
    JsonArray ids = new JsonArray();
    videos.forEach(ids::add);
    body.add("video_ids", ids);
    JsonArray options = new JsonArray();
    options.add("visual");
    options.add("conversation");
    body.add("options", options);
    JsonArray classes = new JsonArray();
    classes.add(upstreamClass("Dance", own("dance tutorial"), own("dance group")));
    classes.add(upstreamClass("Cooking", own("cooking tutorial")));
    classes.add(upstreamClass("Sports", own("sports match")));
    classes.add(upstreamClass("News", own("news report")));
    body.add("classes", classes);
    body.addProperty("page_limit", PAGE_LIMIT);
    body.addProperty("include_clips", true);
    body.addProperty("show_detailed_score", true);
    JsonObject threshold = new JsonObject();
    threshold.addProperty("min_video_score", 0);
    threshold.addProperty("min_clip_score", 0);
    threshold.addProperty("min_duration_ratio", 0.01);
    body.add("threshold", threshold);
    return body;
  }

  private static JsonObject upstreamClass(String name, String... prompts) {
    JsonObject c = new JsonObject();
    c.addProperty("name", name);
    JsonArray p = new JsonArray();
    for (String s : prompts) {
      p.add(s);
    }
    c.add("prompts", p);
    return c;
  }

  /** Every page of request(), straight from the emulator (v1.2), parsed with JsonFormat. */
  private List<GetClassifyPageResponse> upstreamPages(ClassifyRequest r) {
    assertEquals(request().build(), r, "upstreamBody() writes request() only");
    List<GetClassifyPageResponse> pages = new ArrayList<>();
    GetClassifyPageResponse page = parsePage(stack.classifyUpstream(upstreamBody()).expectOk().body());
    pages.add(page);
    while (!page.getPageInfo().getNextPageToken().isEmpty()) {
      assertTrue(pages.size() < 100, "the emulator's page chain does not end");
      page = parsePage(stack.pageUpstream(page.getPageInfo().getNextPageToken()).expectOk().body());
      pages.add(page);
    }
    return pages;
  }

  private static GetClassifyPageResponse parsePage(String json) {
    GetClassifyPageResponse.Builder b = GetClassifyPageResponse.newBuilder();
    try {
      // Field names of the proto are the upstream's JSON names; fields the contract does not
      // carry are ignored here, as the gateway ignores them.
      JsonFormat.parser().ignoringUnknownFields().merge(json, b);
    } catch (InvalidProtocolBufferException e) {
      throw new AssertionError("emulator page does not parse as GetClassifyPageResponse: " + json, e);
    }
    return b.build();
  }

  private List<ClassifyResponse> stream(ClassifyRequest request) {
    List<ClassifyResponse> pages = new ArrayList<>();
    client.streamAll(request, DEADLINE, pages::add);
    return pages;
  }

  private static List<VideoClassification> data(List<ClassifyResponse> pages) {
    return pages.stream().flatMap(p -> p.getDataList().stream()).collect(Collectors.toList());
  }

  private static List<String> videoIdsOf(List<VideoClassification> data) {
    return data.stream().map(VideoClassification::getVideoId).collect(Collectors.toList());
  }

  private List<JsonObject> journal(String method, String pathPart) {
    return stack.journal().stream()
        .filter(r -> method.equals(r.get("method").getAsString()))
        .filter(r -> r.get("path").getAsString().contains(pathPart))
        .collect(Collectors.toList());
  }

  /**
   * Page requests (GET /classify/{token}) in the journal; on v1.3 video retrievals (GET
   * /v1.3/indexes/{id}/videos/{id}, one per video, all before page 1).
   */
  private List<JsonObject> pageGets() {
    if (v13) {
      return journal("GET", "/videos/").stream()
          .filter(r -> r.get("path").getAsString().startsWith("/v1.3/indexes/"))
          .collect(Collectors.toList());
    }
    return journal("GET", "/classify/");
  }

  /**
   * Classification starts (POST /classify) in the journal; on v1.3 prompt embeddings (POST
   * /v1.3/embed-v2, one per distinct prompt, the first calls of a classification).
   */
  private List<JsonObject> classifyPosts() {
    if (v13) {
      return stack.journal().stream()
          .filter(r -> "POST".equals(r.get("method").getAsString()))
          .filter(r -> r.get("path").getAsString().equals("/v1.3/embed-v2"))
          .collect(Collectors.toList());
    }
    return stack.journal().stream()
        .filter(r -> "POST".equals(r.get("method").getAsString()))
        .filter(r -> r.get("path").getAsString().endsWith("/classify"))
        .collect(Collectors.toList());
  }

  private static ErrorInfo errorInfoOf(StatusRuntimeException e) {
    ErrorInfo info =
        ClassifyClient.errorInfo(e)
            .orElseThrow(() -> new AssertionError("error without ErrorInfo: " + e.getStatus()));
    assertEquals(ClassifyClient.ERROR_DOMAIN, info.getDomain(), "ErrorInfo domain");
    assertTrue(info.getReason().matches("[A-Z][A-Z0-9_]{0,62}"), "reason is UPPER_SNAKE: " + info);
    return info;
  }

  private static String envOr(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? fallback : v;
  }

  // ---- the tests -------------------------------------------------------------------------

  @Test
  void everyPageArrivesInOrderWithEveryField() {
    List<ClassifyResponse> got = stream(request().build());
    List<GetClassifyPageResponse> want = expectedPages(request().build());

    assertTrue(want.size() >= 3, "precondition: a multi-page result, got " + want.size() + " pages");
    assertEquals(want.size(), got.size(), "one message per upstream page");
    for (int i = 0; i < got.size(); i++) {
      ClassifyResponse page = got.get(i);
      GetClassifyPageResponse upstream = want.get(i);
      String where = "page " + (i + 1);
      assertEquals(i + 1, page.getPageNumber(), where + ": page_number");
      assertEquals(wantScoring(), page.getScoring(), where + ": scoring");
      assertEquals(upstream.getDataList(), page.getDataList(), where + ": data");
      assertEquals(upstream.getPageInfo().getLimitPerPage(), page.getPageInfo().getLimitPerPage(),
          where + ": limit_per_page");
      assertEquals(upstream.getPageInfo().getTotalResults(), page.getPageInfo().getTotalResults(),
          where + ": total_results");
      boolean last = i == got.size() - 1;
      assertEquals(last, page.getPageInfo().getNextPageToken().isEmpty(),
          where + ": next_page_token is empty exactly on the last page");
      assertEquals(i == 0, page.getPageInfo().getPrevPageToken().isEmpty(),
          where + ": prev_page_token is empty exactly on the first page");
      assertTrue(page.getPageInfo().hasPageExpiredAt(), where + ": page_expired_at");
      assertTrue(page.getPageInfo().getPageExpiredAt().getSeconds()
              > System.currentTimeMillis() / 1000, where + ": page_expired_at is in the future");
    }
    List<VideoClassification> all = data(got);
    assertEquals(got.get(0).getPageInfo().getTotalResults(), all.size(), "total_results videos in all");
    assertEquals(all.size(), new HashSet<>(videoIdsOf(all)).size(), "no video twice");
    // include_clips and show_detailed_score reached the upstream and came back.
    List<ClassResult> results =
        all.stream().flatMap(v -> v.getClassesList().stream()).collect(Collectors.toList());
    assertFalse(results.isEmpty(), "some class results");
    assertTrue(results.stream().anyMatch(c -> c.getClipsCount() > 0), "clips are carried");
    assertTrue(results.stream().allMatch(ClassResult::hasDetailedScores), "detailed_scores are carried");
    assertTrue(results.stream().flatMap(c -> c.getClipsList().stream())
        .allMatch(c -> !c.getOption().isEmpty() && c.getEnd() >= c.getStart()), "clip fields");
  }

  @Test
  void maxPagesCapsTheStreamAndFetchesNothingBeyondIt() {
    List<ClassifyResponse> got = stream(request().setMaxPages(2).build());

    assertEquals(2, got.size(), "max_pages=2 gives two messages");
    assertEquals(List.of(1, 2), got.stream().map(ClassifyResponse::getPageNumber).toList());
    assertFalse(got.get(1).getPageInfo().getNextPageToken().isEmpty(),
        "the last message's next_page_token says where to resume");
    if (v13) {
      // v1.3 ranks every video before page 1 (the cap cannot save those calls), once.
      assertComputedOnce(stack.journal().size());
      return;
    }
    assertEquals(1, classifyPosts().size(), "one classification started");
    assertEquals(1, pageGets().size(), "no page fetched beyond the cap: " + stack.journal());
  }

  @Test
  void resumesFromAPageToken() {
    List<ClassifyResponse> full = stream(request().build());
    assertTrue(full.size() >= 3, "precondition: a multi-page result");

    List<ClassifyResponse> first = new ArrayList<>();
    String token = client.streamAll(request().setMaxPages(1).build(), DEADLINE, first::add);
    assertEquals(1, first.size());
    assertEquals(first.get(0).getPageInfo().getNextPageToken(), token, "streamAll returns the last token");
    assertFalse(token.isEmpty());
    if (v13) {
      assertTrue(token.startsWith("c13."), "a v1.3 gateway mints its own c13. tokens: " + token);
    }

    List<ClassifyResponse> rest = stream(ClassifyRequest.newBuilder().setPageToken(token).build());
    assertEquals(full.size() - 1, rest.size(), "the rest of the pages");
    for (int i = 0; i < rest.size(); i++) {
      assertEquals(i + 1, rest.get(i).getPageNumber(), "page_number counts within this stream");
    }
    List<ClassifyResponse> joined = new ArrayList<>(first);
    joined.addAll(rest);
    assertEquals(data(full), data(joined), "first page + resumed pages = the whole result");
    assertTrue(rest.get(rest.size() - 1).getPageInfo().getNextPageToken().isEmpty());
  }

  @Test
  void getClassifyPageReturnsOnePage() {
    List<ClassifyResponse> full = stream(request().build());
    assertTrue(full.size() >= 3, "precondition: a multi-page result");

    List<ClassifyResponse> first = stream(request().setMaxPages(1).build());
    GetClassifyPageResponse second = client.getPage(first.get(0).getPageInfo().getNextPageToken());
    assertEquals(full.get(1).getDataList(), second.getDataList(), "page 2");
    assertEquals(wantScoring(), second.getScoring(), "scoring");
    assertEquals(full.get(1).getPageInfo().getTotalResults(), second.getPageInfo().getTotalResults());
    assertEquals(PAGE_LIMIT, second.getPageInfo().getLimitPerPage());
    assertFalse(second.getPageInfo().getNextPageToken().isEmpty());
    assertFalse(second.getPageInfo().getPrevPageToken().isEmpty(), "page 2 has a previous page");

    GetClassifyPageResponse back = client.getPage(second.getPageInfo().getPrevPageToken());
    assertEquals(full.get(0).getDataList(), back.getDataList(), "prev_page_token leads back to page 1");

    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> stub.getClassifyPage(GetClassifyPageRequest.getDefaultInstance()));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    BadRequest br = ClassifyClient.badRequest(e).orElseThrow();
    assertEquals(List.of("page_token"),
        br.getFieldViolationsList().stream().map(BadRequest.FieldViolation::getField).toList());
  }

  @Test
  void slowUpstreamEndsWithDeadlineExceeded() throws Exception {
    int latencyMs = 2000;
    stack.addFault(fault("POST", startPath(), 0, -1, action("latency", "ms", latencyMs)));
    long started = System.nanoTime();
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> streamFresh(faultRequest(), Duration.ofMillis(800), page -> fail("no page expected")));
    long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
    assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode(), e.getStatus().toString());
    assertTrue(ms < latencyMs, "the call ends at its deadline, not after the upstream: " + ms + " ms");

    // The deadline reached the gateway: it gave up its upstream request instead of waiting
    // for it, and did not retry after the deadline.
    Thread.sleep(latencyMs + 500 - ms);
    List<JsonObject> posts = classifyPosts();
    assertEquals(1, posts.size(), "one upstream attempt: " + posts);
    assertTrue(posts.get(0).get("disconnected").getAsBoolean(),
        "the upstream request was abandoned at the deadline: " + posts.get(0));
  }

  @Test
  void classifiesAWholeIndex() {
    String index = stack.indexIds().get(0);
    ClassifyRequest indexRequest =
        request().clearVideoIds().setIndexId(index).setIncludeClips(false).build();
    List<ClassifyResponse> got = stream(indexRequest);
    assertTrue(data(got).stream().flatMap(v -> v.getClassesList().stream())
        .allMatch(c -> c.getClipsCount() == 0), "no clips without include_clips");
    if (v13) {
      // v1.3 walks the index's video listing (which the gateway may have cached when another
      // test looked its videos up there): every video classified is one of the index's. The
      // same request streamed again is the oracle.
      List<String> listed = videoIdsOf(data(got));
      assertTrue(stack.videoIds(index).containsAll(listed) && !listed.isEmpty(),
          "the index's videos, and only them: " + listed);
      List<GetClassifyPageResponse> want = expectedPages(indexRequest);
      assertTrue(want.size() >= 2, "precondition: a multi-page index, got " + want.size());
      assertEquals(want.size(), got.size(), "as many pages as streamed before");
      for (int i = 0; i < got.size(); i++) {
        assertEquals(i + 1, got.get(i).getPageNumber());
        assertEquals(want.get(i).getDataList(), got.get(i).getDataList(), "page " + (i + 1));
      }
      return;
    }
    assertEquals(1, journal("POST", "/classify/bulk").size(), "index_id goes to POST /classify/bulk");

    JsonObject body = upstreamBody();
    body.remove("video_ids");
    body.addProperty("index_id", index);
    body.remove("include_clips");
    List<GetClassifyPageResponse> want = new ArrayList<>();
    GetClassifyPageResponse page =
        parsePage(stack.post(Stack.API + "/classify/bulk", body, true).expectOk().body());
    want.add(page);
    while (!page.getPageInfo().getNextPageToken().isEmpty()) {
      page = parsePage(stack.pageUpstream(page.getPageInfo().getNextPageToken()).expectOk().body());
      want.add(page);
    }
    assertEquals(want.size(), got.size(), "one message per upstream page");
    for (int i = 0; i < got.size(); i++) {
      assertEquals(i + 1, got.get(i).getPageNumber());
      assertEquals(want.get(i).getDataList(), got.get(i).getDataList(), "page " + (i + 1));
    }
  }

  /**
   * A token the gateway cannot serve is INVALID_ARGUMENT: v1.2 passes it to the upstream and
   * relays its 400; v1.3 refuses any token it did not mint (not c13.) itself, naming page_token.
   */
  @Test
  void unknownPageTokenIsTheUpstreamsInvalidArgument() {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> client.getPage("0123456789abcdef0123456789abcdef"));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), e.getStatus().toString());
    if (v13) {
      BadRequest br = ClassifyClient.badRequest(e)
          .orElseThrow(() -> new AssertionError("no BadRequest: " + ClassifyClient.rpcStatus(e)));
      assertEquals(List.of("page_token"),
          br.getFieldViolationsList().stream().map(BadRequest.FieldViolation::getField).toList());
      assertTrue(classifyPosts().isEmpty() && pageGets().isEmpty(), "nothing sent upstream");
    } else {
      assertEquals(Optional.of(400), ClassifyClient.upstreamHttpStatus(e));
    }
    errorInfoOf(e);
  }

  @Test
  void cancellingMidStreamStopsTheUpstreamWork() throws Exception {
    // Page requests are slow, so the gateway's prefetch of page 2 is in flight when we cancel.
    // (v1.3 fetches everything before page 1: no fault, and no upstream call may follow.)
    int latencyMs = 2000;
    if (!v13) {
      stack.addFault(fault("GET", "/classify/", 0, -1, action("latency", "ms", latencyMs)));
    }

    Context.CancellableContext ctx = Context.current().withCancellation();
    Context previous = ctx.attach();
    try {
      Iterator<ClassifyResponse> it =
          fresh.withDeadlineAfter(DEADLINE.toMillis(), TimeUnit.MILLISECONDS).classify(request().build());
      ClassifyResponse first = it.next();
      assertEquals(1, first.getPageNumber());
      assertFalse(first.getPageInfo().getNextPageToken().isEmpty(), "precondition: more pages");
      ctx.cancel(null);
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> {
        while (it.hasNext()) {
          it.next();
        }
      });
      assertEquals(Status.Code.CANCELLED, e.getStatus().getCode());
    } finally {
      ctx.detach(previous);
    }

    if (v13) {
      assertNoUpstreamCallAfterTheCancel();
      return;
    }
    // Past the injected latency, the in-flight page request must show up as abandoned by the
    // gateway (disconnected), and no later page may have been requested.
    Thread.sleep(latencyMs + 1000);
    List<JsonObject> gets = pageGets();
    assertTrue(gets.size() <= 1, "at most the one prefetched page was requested: " + gets);
    for (JsonObject r : gets) {
      assertTrue(r.has("disconnected") && r.get("disconnected").getAsBoolean(),
          "the in-flight page request was abandoned when the caller cancelled: " + r);
    }
  }

  @Test
  void consumerThatThrowsCancelsTheCall() throws Exception {
    // Page requests are slow, so the gateway's prefetch of page 2 is in flight when the
    // consumer gives up on page 1. streamAll must cancel the call then, not leave it open
    // until its deadline while the gateway goes on fetching pages.
    // (v1.3 fetches everything before page 1: no fault, and no upstream call may follow.)
    int latencyMs = 2000;
    if (!v13) {
      stack.addFault(fault("GET", "/classify/", 0, -1, action("latency", "ms", latencyMs)));
    }
    class Stop extends RuntimeException {
      Stop() {
        super("consumer gives up");
      }
    }
    AtomicInteger delivered = new AtomicInteger();
    Stop thrown = assertThrows(Stop.class, () -> streamFresh(request().build(), DEADLINE, page -> {
      assertFalse(page.getPageInfo().getNextPageToken().isEmpty(), "precondition: more pages");
      delivered.incrementAndGet();
      throw new Stop();
    }));
    assertEquals("consumer gives up", thrown.getMessage(), "the consumer's exception, unchanged");
    assertEquals(1, delivered.get());
    if (v13) {
      assertNoUpstreamCallAfterTheCancel();
      return;
    }

    // Past the injected latency, every page request must show up as abandoned by the
    // gateway (disconnected), and no later page may have been requested.
    Thread.sleep(latencyMs + 1000);
    List<JsonObject> gets = pageGets();
    assertTrue(gets.size() <= 1, "at most the one prefetched page was requested: " + gets);
    for (JsonObject r : gets) {
      assertTrue(r.has("disconnected") && r.get("disconnected").getAsBoolean(),
          "the in-flight page request was abandoned when the consumer threw: " + r);
    }
  }

  /**
   * v1.3, a stream of request() just cancelled after page 1: its upstream calls (all made before
   * page 1) are one computation of request(), and none follows the cancel.
   */
  private void assertNoUpstreamCallAfterTheCancel() throws InterruptedException {
    int atCancel = stack.journal().size();
    assertComputedOnce(atCancel);
    Thread.sleep(500);
    assertEquals(atCancel, stack.journal().size(),
        "no upstream call after the cancel: " + stack.journal());
  }

  /**
   * v1.3, the journal being the computation of request() (the test's own prompts): one embed-v2
   * per distinct prompt, and at most one retrieval per video (another test may have fetched a
   * video's segments before: the gateway's caches keep them for the whole suite). {@code
   * journalSize}: how many requests the journal held, for the message.
   */
  private void assertComputedOnce(int journalSize) {
    assertEquals(distinctPrompts(request().build()), classifyPosts().size(),
        "one embed-v2 per distinct prompt (" + journalSize + " requests): " + stack.journal());
    List<String> gets = pageGets().stream().map(r -> r.get("path").getAsString()).toList();
    assertEquals(gets.size(), new HashSet<>(gets).size(), "no video fetched twice: " + gets);
    assertTrue(gets.size() <= videos.size(), "at most one retrieval per video: " + gets);
  }

  @Test
  void invalidRequestNamesEveryBadField() {
    ClassifyRequest bad =
        ClassifyRequest.newBuilder()
            .addOptions(SearchOption.SEARCH_OPTION_VISUAL)
            .addClasses(ClassDefinition.newBuilder().setName("Dance")) // no prompts
            .setPageLimit(500) // above 50
            .build(); // neither video_ids nor index_id
    StatusRuntimeException e =
        assertThrows(StatusRuntimeException.class, () -> client.streamAll(bad, DEADLINE, p -> { }));

    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    com.google.rpc.Status status = ClassifyClient.rpcStatus(e).orElseThrow();
    assertEquals(Status.Code.INVALID_ARGUMENT.value(), status.getCode());
    BadRequest badRequest = ClassifyClient.badRequest(e)
        .orElseThrow(() -> new AssertionError("no BadRequest detail: " + status));
    Set<String> fields = badRequest.getFieldViolationsList().stream()
        .map(BadRequest.FieldViolation::getField).collect(Collectors.toSet());
    assertTrue(fields.containsAll(Set.of("video_ids", "classes[0].prompts", "page_limit")),
        "field violations: " + badRequest.getFieldViolationsList());
    assertTrue(badRequest.getFieldViolationsList().stream().noneMatch(v -> v.getDescription().isEmpty()));
    errorInfoOf(e);
    assertTrue(stack.journal().stream().noneMatch(r -> r.get("path").getAsString().contains("/classify"))
        && classifyPosts().isEmpty() && pageGets().isEmpty(),
        "an invalid request never reaches the upstream");
  }

  /**
   * The gateway remembers an upstream 429 for every replica until its Retry-After (the shared
   * quota), so the Retry-After here is short and the test waits it out: the suite shares one
   * gateway, and the next test must find the quota open.
   */
  @Test
  void rateLimitedCallCarriesRetryInfo() throws InterruptedException {
    stack.addFault(fault("POST", startPath(), 0, -1, action("rate_limit", "retry_after", 4)));
    long started = System.nanoTime();
    try {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
          () -> streamFresh(faultRequest(), Duration.ofSeconds(2), p -> fail("no page expected")));
      long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);

      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode(), e.getStatus().toString());
      Duration delay = ClassifyClient.retryDelay(e)
          .orElseThrow(() -> new AssertionError("no RetryInfo: " + ClassifyClient.rpcStatus(e)));
      assertTrue(delay.compareTo(Duration.ofSeconds(3)) >= 0 && delay.compareTo(Duration.ofMillis(4500)) <= 0,
          "RetryInfo.retry_delay is about the upstream's Retry-After (4 s): " + delay);
      assertEquals("429", errorInfoOf(e).getMetadataOrDefault("http_status", ""));
      assertTrue(ms < 1500, "answered at once, not at the deadline: " + ms + " ms");
      assertEquals(1, classifyPosts().size(), "a wait longer than the deadline is not attempted");
    } finally {
      long left = 4500 - TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
      if (left > 0) {
        Thread.sleep(left);
      }
    }
  }

  @Test
  void failureMidStreamGivesAResumeTokenThatLosesNoPage() {
    assumeFalse(v13, "not run against a v1.3 gateway: it computes every page before it sends the"
        + " first (ranking needs every video), so no upstream call is left mid-stream for a fault"
        + " to fail; resuming from a token is resumesFromAPageToken's");
    List<ClassifyResponse> full = stream(request().build());
    assertTrue(full.size() >= 3, "precondition: a multi-page result");
    stack.clearJournal();

    // The first page request succeeds, every later one fails with HTTP 500. No-cache: the
    // pages come from the upstream, not from the cache the first stream filled.
    stack.addFault(fault("GET", "/classify/", 1, -1, action("status", "status", 500)));
    List<ClassifyResponse> received = new ArrayList<>();
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> streamFresh(request().build(), DEADLINE, received::add));

    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
    assertEquals(2, received.size(), "page 1 (POST) and page 2 (first GET) arrived before the failure");
    ErrorInfo info = errorInfoOf(e);
    assertEquals("500", info.getMetadataOrDefault("http_status", ""), "upstream status: " + info);
    String resume = ClassifyClient.resumeToken(e)
        .orElseThrow(() -> new AssertionError("no resume_page_token: " + info));
    assertEquals(received.get(received.size() - 1).getPageInfo().getNextPageToken(), resume,
        "resume_page_token is the token of the first page not received");

    stack.clearFaults();
    List<ClassifyResponse> rest = new ArrayList<>();
    streamFresh(ClassifyRequest.newBuilder().setPageToken(resume).build(), DEADLINE, rest::add);
    List<ClassifyResponse> joined = new ArrayList<>(received);
    joined.addAll(rest);
    assertEquals(full.size(), joined.size(), "no page lost or repeated");
    assertEquals(data(full), data(joined), "received + resumed = the whole result");
    List<String> ids = videoIdsOf(data(joined));
    assertEquals(ids.size(), new HashSet<>(ids).size(), "no video twice");
  }

  @Test
  void anUpstreamCallIsNeverReplayedByTheServiceConfig() throws Exception {
    // One upstream 500: the gateway does not retry a 500 itself (only 429/502/503/504 and
    // connection errors), and every UNAVAILABLE that followed an upstream request carries
    // grpc-retry-pushback-ms: -1, so the service config (which retries UNAVAILABLE only for
    // refusals at the door, e.g. a draining pod) does not send the POST again.
    // (v1.3: the one embed-v2 of faultRequest()'s one prompt.)
    JsonObject unavailable = fault("POST", startPath(), 0, 1, action("status", "status", 500));
    AtomicInteger attempts = new AtomicInteger();
    ClientStreamTracer.Factory countAttempts = new ClientStreamTracer.Factory() {
      @Override
      public ClientStreamTracer newClientStreamTracer(ClientStreamTracer.StreamInfo info, Metadata headers) {
        if (!info.isTransparentRetry()) {
          attempts.incrementAndGet();
        }
        return new ClientStreamTracer() { };
      }
    };
    ClientInterceptor tracing = new ClientInterceptor() {
      @Override
      public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
        return next.newCall(method, options.withStreamTracerFactory(countAttempts));
      }
    };
    stack.addFault(unavailable);
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> ClassifyClient.streamAll(
            fresh.withInterceptors(tracing).withDeadlineAfter(30, TimeUnit.SECONDS),
            faultRequest(), p -> { }));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
    assertEquals("500", errorInfoOf(e).getMetadataOrDefault("http_status", ""));
    assertEquals(1, attempts.get(), "the client made one attempt");
    assertEquals(1, classifyPosts().size(), "one POST, one billed classification: " + stack.journal());
  }

  @Test
  void gatewayRetriesAreNotMultipliedByTheClient() throws Exception {
    // A persistent 503: the gateway retries it itself, then answers UNAVAILABLE with
    // grpc-retry-pushback-ms: -1, so the service config's retry policy does not start over
    // (each upstream POST starts a new classification and spends quota).
    stack.addFault(fault("POST", startPath(), 0, -1, action("status", "status", 503)));
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> ClassifyClient.streamAll(fresh.withDeadlineAfter(30, TimeUnit.SECONDS), faultRequest(), p -> { }));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
    assertEquals("503", errorInfoOf(e).getMetadataOrDefault("http_status", ""));
    assertEquals(GATEWAY_ATTEMPTS, classifyPosts().size(),
        "only the gateway's own attempts reached the upstream: " + stack.journal());
  }

  /**
   * The shipped gateway shares work (docs/clients.md): the same question asked again is answered
   * from the page cache, every page as the first caller got it, at no upstream request, and so
   * is GetClassifyPage for one of its tokens. With {@code cache-control: no-cache} the question
   * goes to the upstream again (v1.2: a new classification; v1.3 computes it anew from its
   * embedding caches, docs/design.md).
   */
  @Test
  void aRepeatedCallIsServedFromTheCache() {
    List<ClassifyResponse> first = stream(request().build());
    assertTrue(first.size() >= 3, "precondition: a multi-page result, got " + first.size());
    assertFalse(classifyPosts().isEmpty(), "the first call reached the upstream: " + stack.journal());

    stack.clearJournal();
    List<ClassifyResponse> again = stream(request().build());
    assertEquals(first, again, "the repeat's pages are the first call's, tokens included");
    GetClassifyPageResponse second = client.getPage(first.get(0).getPageInfo().getNextPageToken());
    assertEquals(first.get(1).getDataList(), second.getDataList(), "page 2 by token");
    assertEquals(first.get(1).getPageInfo(), second.getPageInfo(), "page 2's page_info");
    assertEquals(List.of(), stack.journal(), "the repeat cost no upstream request");

    if (v13) {
      return;
    }
    List<ClassifyResponse> renewed = new ArrayList<>();
    streamFresh(request().build(), DEADLINE, renewed::add);
    assertEquals(data(first), data(renewed), "no-cache: the same answer");
    assertEquals(1, classifyPosts().size(), "no-cache: a new classification: " + stack.journal());
    assertEquals(first.size() - 1, pageGets().size(), "no-cache: every further page fetched");
    assertFalse(first.get(0).getPageInfo().getNextPageToken()
        .equals(renewed.get(0).getPageInfo().getNextPageToken()), "no-cache: a new chain's tokens");
  }

  /** Identical calls at the same time share one upstream chain: one start, every page to all. */
  @Test
  void concurrentIdenticalCallsShareOneChain() throws Exception {
    int callers = 3;
    // A slow start, so that every caller arrives while the first one's is in flight.
    stack.addFault(fault("POST", startPath(), 0, -1, action("latency", "ms", 700)));
    ClassifyRequest request = faultRequest(); // one upstream start on either backend
    ExecutorService pool = Executors.newFixedThreadPool(callers);
    try {
      List<Future<List<ClassifyResponse>>> calls = new ArrayList<>();
      for (int i = 0; i < callers; i++) {
        calls.add(pool.submit(() -> stream(request)));
      }
      List<ClassifyResponse> one = calls.get(0).get(DEADLINE.toSeconds(), TimeUnit.SECONDS);
      assertFalse(one.isEmpty(), "pages");
      for (Future<List<ClassifyResponse>> call : calls) {
        assertEquals(one, call.get(DEADLINE.toSeconds(), TimeUnit.SECONDS),
            "every caller of one chain gets the same pages");
      }
    } finally {
      pool.shutdownNow();
    }
    assertEquals(1, classifyPosts().size(),
        callers + " identical calls at once start one classification: " + stack.journal());
  }
}
