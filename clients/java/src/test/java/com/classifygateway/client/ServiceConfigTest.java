package com.classifygateway.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import java.io.InputStream;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The jar carries the service config and the contract, and grpc-java accepts the config. That
 * they are fresh copies of deploy/service-config.json and proto/ is checked at the repository
 * root (tests/contract/test_client_copies.py), so this module also builds on its own.
 */
class ServiceConfigTest {

  @Test
  void jarCarriesServiceConfigAndProto() throws Exception {
    for (String resource :
        List.of(ClassifyClient.SERVICE_CONFIG_RESOURCE, "/classify/v1/classify_service.proto")) {
      try (InputStream in = ClassifyClient.class.getResourceAsStream(resource)) {
        assertNotNull(in, resource + " missing from the classpath");
        assertTrue(in.readAllBytes().length > 0, resource + " is empty");
      }
    }
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
