package com.classifygateway.client;

import com.classifygateway.classify.v1.ClassifyRequest;
import com.classifygateway.classify.v1.ClassifyResponse;
import com.classifygateway.classify.v1.ClassifyServiceGrpc;
import com.classifygateway.classify.v1.GetClassifyPageRequest;
import com.classifygateway.classify.v1.GetClassifyPageResponse;
import com.google.gson.Gson;
import com.google.gson.reflect.TypeToken;
import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Context;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.protobuf.StatusProto;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Iterator;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * A small client for classify-gateway's {@code classify.v1.ClassifyService}.
 *
 * <ul>
 *   <li>{@link #channelBuilder(String)}: a channel builder with the shipped service config
 *       ({@code deploy/service-config.json}: 300 s for Classify, 30 s for GetClassifyPage, up to 5 attempts on UNAVAILABLE)
 *       and retries enabled.
 *   <li>{@link #streamAll(ClassifyRequest, Consumer)}: streams every page to a consumer and
 *       returns the last {@code next_page_token} (empty when the stream reached the last page).
 *   <li>Static readers of the {@code google.rpc} error details that the gateway attaches to
 *       every error: {@link #errorInfo}, {@link #badRequest}, {@link #retryInfo},
 *       {@link #retryDelay}, {@link #resumeToken}, {@link #upstreamHttpStatus}.
 * </ul>
 *
 * <p>The generated stubs ({@link ClassifyServiceGrpc}) remain available through {@link
 * #blockingStub()} and {@link #asyncStub()} for anything this class does not cover.
 */
public final class ClassifyClient implements AutoCloseable {

  /** ErrorInfo domain of every error the gateway produces. */
  public static final String ERROR_DOMAIN = "classify-gateway.v1";
  /** ErrorInfo metadata key: token of the first page the caller has not received. */
  public static final String RESUME_PAGE_TOKEN = "resume_page_token";
  /** ErrorInfo metadata key: the upstream HTTP status, when the failure came from upstream. */
  public static final String HTTP_STATUS = "http_status";
  /** Classpath location of the service config (a copy of deploy/service-config.json). */
  public static final String SERVICE_CONFIG_RESOURCE =
      "/com/classifygateway/client/service-config.json";

  private final ManagedChannel channel;
  private final boolean ownsChannel;
  private final ClassifyServiceGrpc.ClassifyServiceBlockingStub blocking;
  private final ClassifyServiceGrpc.ClassifyServiceStub async;

  private ClassifyClient(ManagedChannel channel, boolean ownsChannel) {
    this.channel = Objects.requireNonNull(channel, "channel");
    this.ownsChannel = ownsChannel;
    this.blocking = ClassifyServiceGrpc.newBlockingStub(channel);
    this.async = ClassifyServiceGrpc.newStub(channel);
  }

  /** Connects to {@code target} (e.g. {@code localhost:50051}) with {@link #channelBuilder}. */
  public static ClassifyClient connect(String target) {
    return new ClassifyClient(channelBuilder(target).build(), true);
  }

  /** Wraps a channel that the caller owns (and shuts down); {@link #close()} leaves it open. */
  public static ClassifyClient of(ManagedChannel channel) {
    return new ClassifyClient(channel, false);
  }

  /**
   * A plaintext channel builder for {@code target} with the shipped service config as default
   * config and retries enabled. Add TLS by building your own with {@code
   * Grpc.newChannelBuilder(target, TlsChannelCredentials.create())} and the same two calls:
   * {@code .defaultServiceConfig(loadServiceConfig()).enableRetry()}.
   */
  public static ManagedChannelBuilder<?> channelBuilder(String target) {
    return Grpc.newChannelBuilder(target, InsecureChannelCredentials.create())
        .defaultServiceConfig(loadServiceConfig())
        .enableRetry();
  }

  /** The service config shipped in this jar (deploy/service-config.json), as grpc-java wants it. */
  public static Map<String, ?> loadServiceConfig() {
    try (InputStream in = ClassifyClient.class.getResourceAsStream(SERVICE_CONFIG_RESOURCE)) {
      if (in == null) {
        throw new IllegalStateException(SERVICE_CONFIG_RESOURCE + " is not on the classpath");
      }
      return parseServiceConfig(new InputStreamReader(in, StandardCharsets.UTF_8));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** A service config from a file, e.g. a copy of deploy/service-config.json kept elsewhere. */
  public static Map<String, ?> loadServiceConfig(Path file) throws IOException {
    try (Reader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      return parseServiceConfig(reader);
    }
  }

  /**
   * Parses service-config JSON into nested {@code Map<String, ?>}/{@code List<?>} values. Gson
   * reads every JSON number as a {@link Double}, which is what grpc-java's parser requires
   * ({@code "maxAttempts": 5} becomes {@code 5.0}; an Integer would be rejected).
   */
  public static Map<String, ?> parseServiceConfig(Reader json) {
    Map<String, Object> config =
        new Gson().fromJson(json, new TypeToken<Map<String, Object>>() {}.getType());
    if (config == null) {
      throw new IllegalArgumentException("empty service config");
    }
    return config;
  }

  public ManagedChannel channel() {
    return channel;
  }

  public ClassifyServiceGrpc.ClassifyServiceBlockingStub blockingStub() {
    return blocking;
  }

  public ClassifyServiceGrpc.ClassifyServiceStub asyncStub() {
    return async;
  }

  /**
   * Streams a classification and hands every page to {@code onPage}, in order. Returns the
   * {@code next_page_token} of the last page received: empty when the stream reached the last
   * page, non-empty when {@code max_pages} stopped it (pass it as {@code page_token} to go on).
   *
   * <p>On failure the {@link io.grpc.StatusRuntimeException} propagates; if pages were already
   * delivered, {@link #resumeToken(Throwable)} tells where to resume. If {@code onPage} throws,
   * the call is cancelled (the gateway stops its upstream work) and the exception propagates.
   */
  public String streamAll(ClassifyRequest request, Consumer<ClassifyResponse> onPage) {
    return streamAll(blocking, request, onPage);
  }

  /** {@link #streamAll(ClassifyRequest, Consumer)} with a deadline for the whole stream. */
  public String streamAll(ClassifyRequest request, Duration deadline, Consumer<ClassifyResponse> onPage) {
    return streamAll(
        blocking.withDeadlineAfter(deadline.toNanos(), TimeUnit.NANOSECONDS), request, onPage);
  }

  /**
   * {@link #streamAll(ClassifyRequest, Consumer)} through any blocking stub (deadline,
   * interceptors).
   *
   * <p>The call runs in its own cancellable {@link Context}: when {@code onPage} throws (or the
   * iteration stops for any other reason), the call is cancelled before the exception
   * propagates, so the gateway stops fetching pages upstream at once instead of keeping the
   * stream open until its deadline. The consumer's exception reaches the caller unchanged.
   */
  public static String streamAll(
      ClassifyServiceGrpc.ClassifyServiceBlockingStub stub,
      ClassifyRequest request,
      Consumer<ClassifyResponse> onPage) {
    Context.CancellableContext call = Context.current().withCancellation();
    Context previous = call.attach();
    try {
      String last = "";
      Iterator<ClassifyResponse> pages = stub.classify(request);
      while (pages.hasNext()) {
        ClassifyResponse page = pages.next();
        last = page.getPageInfo().getNextPageToken();
        onPage.accept(page);
      }
      return last;
    } finally {
      call.detach(previous);
      // A no-op when the stream already ended; otherwise it sends RST_STREAM (CANCELLED).
      call.cancel(null);
    }
  }

  /** One page by token (unary {@code GetClassifyPage}). */
  public GetClassifyPageResponse getPage(String pageToken) {
    return blocking.getClassifyPage(
        GetClassifyPageRequest.newBuilder().setPageToken(pageToken).build());
  }

  // ---- error details -------------------------------------------------------------------

  /**
   * The {@code google.rpc.Status} of a failed call, from the grpc-status-details-bin trailer; for
   * an error without that trailer, one with the code and message and no details. Empty only when
   * {@code t} carries no gRPC status at all.
   */
  public static Optional<com.google.rpc.Status> rpcStatus(Throwable t) {
    return Optional.ofNullable(StatusProto.fromThrowable(t));
  }

  /** The first detail of the given type, if the error carries one. */
  public static <T extends Message> Optional<T> detail(Throwable t, Class<T> type) {
    com.google.rpc.Status status = StatusProto.fromThrowable(t);
    if (status == null) {
      return Optional.empty();
    }
    for (Any any : status.getDetailsList()) {
      if (any.is(type)) {
        try {
          return Optional.of(any.unpack(type));
        } catch (InvalidProtocolBufferException e) {
          throw new IllegalStateException("malformed " + type.getSimpleName() + " detail", e);
        }
      }
    }
    return Optional.empty();
  }

  public static Optional<ErrorInfo> errorInfo(Throwable t) {
    return detail(t, ErrorInfo.class);
  }

  public static Optional<BadRequest> badRequest(Throwable t) {
    return detail(t, BadRequest.class);
  }

  public static Optional<RetryInfo> retryInfo(Throwable t) {
    return detail(t, RetryInfo.class);
  }

  /** How long the server asks the caller to wait before retrying (RetryInfo.retry_delay). */
  public static Optional<Duration> retryDelay(Throwable t) {
    return retryInfo(t)
        .filter(RetryInfo::hasRetryDelay)
        .map(r -> Duration.ofSeconds(r.getRetryDelay().getSeconds(), r.getRetryDelay().getNanos()));
  }

  /**
   * The token of the first page not received, when a stream failed after sending pages
   * (ErrorInfo metadata {@code resume_page_token}). Pass it as {@code page_token} of a new
   * {@code Classify} call (nothing else set) to receive the rest.
   */
  public static Optional<String> resumeToken(Throwable t) {
    return errorInfo(t)
        .map(info -> info.getMetadataOrDefault(RESUME_PAGE_TOKEN, ""))
        .filter(token -> !token.isEmpty());
  }

  /** The upstream HTTP status behind the failure (ErrorInfo metadata {@code http_status}). */
  public static Optional<Integer> upstreamHttpStatus(Throwable t) {
    return errorInfo(t)
        .map(info -> info.getMetadataOrDefault(HTTP_STATUS, ""))
        .filter(s -> !s.isEmpty())
        .flatMap(
            s -> {
              try {
                return Optional.of(Integer.parseInt(s));
              } catch (NumberFormatException e) {
                return Optional.empty();
              }
            });
  }

  /** Shuts the channel down (if this client created it) and waits up to 5 s. */
  @Override
  public void close() {
    if (!ownsChannel) {
      return;
    }
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }
}
