package com.classifygateway.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The service config on the classpath is deploy/service-config.json and grpc-java accepts it. */
class ServiceConfigTest {

  private static Path deployFile() {
    String root = System.getProperty("classify.repoRoot", "../..");
    return Path.of(root, "deploy", "service-config.json");
  }

  @Test
  void classpathCopyIsIdenticalToDeployFile() throws Exception {
    byte[] expected = Files.readAllBytes(deployFile());
    try (var in = ClassifyClient.class.getResourceAsStream(ClassifyClient.SERVICE_CONFIG_RESOURCE)) {
      assertNotNull(in, "service config missing from the classpath");
      assertEquals(
          new String(expected, java.nio.charset.StandardCharsets.UTF_8),
          new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8),
          "the jar's service config must be deploy/service-config.json byte for byte");
    }
    assertEquals(ClassifyClient.loadServiceConfig(deployFile()), ClassifyClient.loadServiceConfig());
  }

  @Test
  void retryPolicyRetriesOnlyUnavailableWithNumbersAsDoubles() {
    Map<String, ?> config = ClassifyClient.loadServiceConfig();
    List<?> methodConfig = (List<?>) config.get("methodConfig");
    // One entry per RPC, each with its own timeout.
    assertEquals(2, methodConfig.size());
    java.util.Set<Object> methods = new java.util.HashSet<>();
    for (Object entry : methodConfig) {
      Map<?, ?> mc = (Map<?, ?>) entry;
      Map<?, ?> name = (Map<?, ?>) ((List<?>) mc.get("name")).get(0);
      assertEquals("classify.v1.ClassifyService", name.get("service"));
      methods.add(name.get("method"));
      assertNotNull(mc.get("timeout"));
      Map<?, ?> retry = (Map<?, ?>) mc.get("retryPolicy");
      // grpc-java rejects Integer here: numbers must be Double.
      assertInstanceOf(Double.class, retry.get("maxAttempts"));
      assertTrue((Double) retry.get("maxAttempts") <= 5.0, "at most 5 attempts (gRFC A6 / AIP-194)");
      assertEquals(List.of("UNAVAILABLE"), retry.get("retryableStatusCodes"));
    }
    assertEquals(java.util.Set.of("Classify", "GetClassifyPage"), methods);
  }

  @Test
  void channelAcceptsTheServiceConfig() throws Exception {
    // The channel parses the default service config when it is built and rejects a bad one.
    ManagedChannel channel = ClassifyClient.channelBuilder("localhost:1").build();
    try {
      assertNotNull(channel);
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
