package com.classifygateway.client;

import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * The running stack the integration tests talk to: the gateway (gRPC) and the emulator of the
 * upstream (HTTP; its admin API under /_emulator injects faults and shows a request journal).
 * tools/stack.py starts both and exports their addresses.
 */
final class Stack {
  static final String GATEWAY_ADDR = "CLASSIFY_GATEWAY_ADDR";
  static final String EMULATOR_URL = "CLASSIFY_EMULATOR_URL";
  static final String EMULATOR_API_KEY = "CLASSIFY_EMULATOR_API_KEY";
  static final String METRICS_URL = "CLASSIFY_GATEWAY_METRICS_URL";
  /** The gateway's backend, v1.2 (the default) or v1.3: `tools.stack --upstream-api`. */
  static final String UPSTREAM_API = "CLASSIFY_GATEWAY_UPSTREAM_API";
  /**
   * The upstream API version the tests read the corpus and, on v1.2, classify's own answers
   * from (CLASSIFY_EMULATOR_URL carries none; the corpus is the same under /v1.3).
   */
  static final String API = "/v1.2";

  final String gatewayAddr;
  final String emulatorUrl;
  final String apiKey;
  final String metricsUrl;
  /** "v1.2" or "v1.3": the backend of the gateway under test. */
  final String backend;
  private final HttpClient http =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  private Stack(
      String gatewayAddr, String emulatorUrl, String apiKey, String metricsUrl, String backend) {
    this.gatewayAddr = gatewayAddr;
    this.emulatorUrl = emulatorUrl.replaceAll("/+$", "");
    this.apiKey = apiKey;
    this.metricsUrl = metricsUrl;
    this.backend = backend;
  }

  /** Whether the gateway runs the v1.3 backend (classify computed from embeddings). */
  boolean v13() {
    return "v1.3".equals(backend);
  }

  /** The stack from the environment; fails the calling test (not skips it) when it is missing. */
  static Stack fromEnv() {
    String addr = System.getenv(GATEWAY_ADDR);
    if (addr == null || addr.isBlank()) {
      fail(
          GATEWAY_ADDR
              + " is not set: these integration tests need a running gateway and emulator. "
              + "Run them with `make test-java` from the repository root, or "
              + "`.venv/bin/python -m tools.stack -- make -C clients/java test` "
              + "(tools/stack.py starts both and exports "
              + GATEWAY_ADDR + ", " + EMULATOR_URL + ", " + EMULATOR_API_KEY + ").");
    }
    String emu = System.getenv(EMULATOR_URL);
    String key = System.getenv(EMULATOR_API_KEY);
    if (emu == null || emu.isBlank() || key == null || key.isBlank()) {
      fail(GATEWAY_ADDR + " is set but " + EMULATOR_URL + " / " + EMULATOR_API_KEY
          + " are not: run the suite through tools/stack.py, which exports all of them.");
    }
    String backend = System.getenv(UPSTREAM_API);
    if (backend == null || backend.isBlank()) {
      backend = "v1.2";
    }
    if (!backend.equals("v1.2") && !backend.equals("v1.3")) {
      fail(UPSTREAM_API + "=" + backend + ": want v1.2 or v1.3");
    }
    return new Stack(addr, emu, key, System.getenv(METRICS_URL), backend);
  }

  // ---- emulator admin API ------------------------------------------------------------

  /** Clears faults, the journal and any other emulator state. */
  void reset() {
    post("/_emulator/reset", new JsonObject(), false).expectOk();
  }

  void addFault(JsonObject rule) {
    post("/_emulator/faults", rule, false).expectOk();
  }

  void clearFaults() {
    send(HttpRequest.newBuilder(uri("/_emulator/faults")).DELETE(), false).expectOk();
  }

  /** A fault rule: {"match":{"method":M,"path":P},"after":A,"times":T,"action":ACTION}. */
  static JsonObject fault(String method, String path, int after, int times, JsonObject action) {
    JsonObject match = new JsonObject();
    match.addProperty("method", method);
    match.addProperty("path", path);
    JsonObject rule = new JsonObject();
    rule.add("match", match);
    rule.addProperty("after", after);
    rule.addProperty("times", times);
    rule.add("action", action);
    return rule;
  }

  static JsonObject action(String type, Object... keyValues) {
    JsonObject a = new JsonObject();
    a.addProperty("type", type);
    for (int i = 0; i + 1 < keyValues.length; i += 2) {
      Object v = keyValues[i + 1];
      if (v instanceof Number n) {
        a.addProperty((String) keyValues[i], n);
      } else {
        a.addProperty((String) keyValues[i], String.valueOf(v));
      }
    }
    return a;
  }

  /** Empties the request journal; the emulator keeps its classifications and their tokens. */
  void clearJournal() {
    send(HttpRequest.newBuilder(uri("/_emulator/requests")).DELETE(), false).expectOk();
  }

  /** The emulator's request journal, oldest first. */
  List<JsonObject> journal() {
    JsonObject body = get("/_emulator/requests", false).expectOk().json().getAsJsonObject();
    List<JsonObject> out = new ArrayList<>();
    for (JsonElement e : body.getAsJsonArray("requests")) {
      out.add(e.getAsJsonObject());
    }
    return out;
  }

  // ---- the upstream API itself (the oracle) ----------------------------------------

  List<String> indexIds() {
    return ids(get(API + "/indexes?page_limit=50", true).expectOk().json());
  }

  List<String> videoIds(String indexId) {
    return ids(get(API + "/indexes/" + enc(indexId) + "/videos?page_limit=50", true)
        .expectOk().json());
  }

  /** POST /classify straight to the emulator (same API key as the gateway). */
  Response classifyUpstream(JsonObject body) {
    return post(API + "/classify", body, true);
  }

  /** GET /classify/{token} straight to the emulator. */
  Response pageUpstream(String token) {
    return get(API + "/classify/" + token, true);
  }

  String metrics() {
    if (metricsUrl == null) {
      return "";
    }
    return send(HttpRequest.newBuilder(URI.create(metricsUrl)).GET(), false).expectOk().body();
  }

  // ---- plumbing -----------------------------------------------------------------------

  record Response(int status, String body) {
    Response expectOk() {
      if (status / 100 != 2) {
        throw new AssertionError("emulator answered HTTP " + status + ": " + body);
      }
      return this;
    }

    JsonElement json() {
      return JsonParser.parseString(body);
    }
  }

  private static List<String> ids(JsonElement listing) {
    JsonArray data = listing.getAsJsonObject().getAsJsonArray("data");
    List<String> out = new ArrayList<>();
    for (JsonElement e : data) {
      out.add(e.getAsJsonObject().get("_id").getAsString());
    }
    return out;
  }

  private static String enc(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8);
  }

  private URI uri(String path) {
    return URI.create(emulatorUrl + path);
  }

  Response get(String path, boolean withKey) {
    return send(HttpRequest.newBuilder(uri(path)).GET(), withKey);
  }

  Response post(String path, JsonElement body, boolean withKey) {
    return send(
        HttpRequest.newBuilder(uri(path))
            .header("content-type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(new Gson().toJson(body))),
        withKey);
  }

  private Response send(HttpRequest.Builder builder, boolean withKey) {
    builder.timeout(Duration.ofSeconds(30));
    if (withKey) {
      builder.header("x-api-key", apiKey);
    }
    HttpRequest request = builder.build();
    try {
      HttpResponse<String> r = http.send(request, HttpResponse.BodyHandlers.ofString());
      return new Response(r.statusCode(), r.body());
    } catch (IOException e) {
      throw new AssertionError("emulator request failed: " + request.method() + " " + request.uri(), e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError("interrupted", e);
    }
  }
}
