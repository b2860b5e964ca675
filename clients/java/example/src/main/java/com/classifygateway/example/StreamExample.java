package com.classifygateway.example;

import com.classifygateway.classify.v1.ClassDefinition;
import com.classifygateway.classify.v1.ClassResult;
import com.classifygateway.classify.v1.ClassifyRequest;
import com.classifygateway.classify.v1.SearchOption;
import com.classifygateway.classify.v1.Threshold;
import com.classifygateway.classify.v1.VideoClassification;
import com.classifygateway.client.ClassifyClient;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Streams a classification through classify-gateway and prints each page.
 *
 * <pre>
 * make -C clients/java example ARGS="--target localhost:50051 --index IDX"
 * make -C clients/java example ARGS="--video VID1 --video VID2 --page-limit 2"
 * make -C clients/java example ARGS="--index IDX --class 'Dance=dance tutorial|dance group'"
 * </pre>
 *
 * The target defaults to $CLASSIFY_GATEWAY_ADDR, then localhost:50051. Without --class the
 * taxonomy is Dance / Cooking / Sports / News. On a failed stream it prints the status, the
 * upstream HTTP status and the resume token when the gateway sent them, and exits 1.
 */
public final class StreamExample {

  private StreamExample() {}

  public static void main(String[] args) {
    String target = envOr("CLASSIFY_GATEWAY_ADDR", "localhost:50051");
    ClassifyRequest.Builder request =
        ClassifyRequest.newBuilder()
            .addOptions(SearchOption.SEARCH_OPTION_VISUAL)
            .addOptions(SearchOption.SEARCH_OPTION_CONVERSATION)
            .setIncludeClips(false)
            .setThreshold(Threshold.newBuilder().setMinVideoScore(0).setMinDurationRatio(0.01));
    List<ClassDefinition> classes = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      String arg = args[i];
      String value = i + 1 < args.length ? args[i + 1] : null;
      switch (arg) {
        case "--target" -> target = require(arg, value);
        case "--index" -> request.setIndexId(require(arg, value));
        case "--video" -> request.addVideoIds(require(arg, value));
        case "--page-limit" -> request.setPageLimit(Integer.parseInt(require(arg, value)));
        case "--max-pages" -> request.setMaxPages(Integer.parseInt(require(arg, value)));
        case "--page-token" -> request.setPageToken(require(arg, value));
        case "--class" -> classes.add(parseClass(require(arg, value)));
        case "-h", "--help" -> {
          usage();
          return;
        }
        default -> {
          System.err.println("unknown argument: " + arg);
          usage();
          System.exit(2);
        }
      }
      i++;
    }
    if (request.getIndexId().isEmpty()
        && request.getVideoIdsCount() == 0
        && request.getPageToken().isEmpty()) {
      System.err.println("give --index ID, --video ID (repeatable) or --page-token TOKEN");
      usage();
      System.exit(2);
    }
    if (classes.isEmpty()) {
      classes.add(parseClass("Dance=dance tutorial|dance group"));
      classes.add(parseClass("Cooking=cooking tutorial|recipe"));
      classes.add(parseClass("Sports=sports match|athletes"));
      classes.add(parseClass("News=news report|anchor"));
    }
    if (request.getPageToken().isEmpty()) {
      request.addAllClasses(classes);
    } else {
      // Resuming: only the token is sent.
      request = ClassifyRequest.newBuilder().setPageToken(request.getPageToken());
    }

    try (ClassifyClient client = ClassifyClient.connect(target)) {
      String next =
          client.streamAll(
              request.build(),
              page -> {
                System.out.printf(
                    Locale.ROOT,
                    "page %d: %d videos (total %d, limit %d)%n",
                    page.getPageNumber(),
                    page.getDataCount(),
                    page.getPageInfo().getTotalResults(),
                    page.getPageInfo().getLimitPerPage());
                for (VideoClassification video : page.getDataList()) {
                  for (ClassResult c : video.getClassesList()) {
                    System.out.printf(
                        Locale.ROOT,
                        "  %-28s %-12s score=%6.2f duration_ratio=%.3f%n",
                        video.getVideoId(),
                        c.getName(),
                        c.getScore(),
                        c.getDurationRatio());
                  }
                }
              });
      System.out.println(
          next.isEmpty() ? "done: last page reached" : "stopped early; resume with --page-token " + next);
    } catch (StatusRuntimeException e) {
      System.err.println("classify failed: " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
      ClassifyClient.upstreamHttpStatus(e).ifPresent(s -> System.err.println("  upstream HTTP status: " + s));
      ClassifyClient.retryDelay(e).ifPresent(d -> System.err.println("  retry after: " + d));
      ClassifyClient.badRequest(e)
          .ifPresent(
              br ->
                  br.getFieldViolationsList()
                      .forEach(v -> System.err.println("  " + v.getField() + ": " + v.getDescription())));
      ClassifyClient.resumeToken(e)
          .ifPresent(t -> System.err.println("  resume with --page-token " + t));
      System.exit(1);
    }
  }

  private static ClassDefinition parseClass(String spec) {
    int eq = spec.indexOf('=');
    if (eq <= 0) {
      throw new IllegalArgumentException("--class wants NAME=prompt1|prompt2, got " + spec);
    }
    return ClassDefinition.newBuilder()
        .setName(spec.substring(0, eq))
        .addAllPrompts(Arrays.asList(spec.substring(eq + 1).split("\\|")))
        .build();
  }

  private static String require(String flag, String value) {
    if (value == null) {
      throw new IllegalArgumentException(flag + " needs a value");
    }
    return value;
  }

  private static String envOr(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? fallback : v;
  }

  private static void usage() {
    System.err.println(
        "usage: StreamExample [--target HOST:PORT] (--index ID | --video ID... | --page-token T)\n"
            + "                     [--class 'Name=prompt|prompt']... [--page-limit N] [--max-pages N]");
  }
}
