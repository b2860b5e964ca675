package com.classifygateway.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.Code;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** The error-detail readers, on statuses built the way the gateway builds them. */
class ErrorDetailsTest {

  private static StatusRuntimeException error(Code code, com.google.protobuf.Message... details) {
    com.google.rpc.Status.Builder status =
        com.google.rpc.Status.newBuilder().setCode(code.getNumber()).setMessage("boom");
    for (com.google.protobuf.Message d : details) {
      status.addDetails(Any.pack(d));
    }
    return StatusProto.toStatusRuntimeException(status.build());
  }

  @Test
  void readsEveryDetail() {
    StatusRuntimeException e =
        error(
            Code.UNAVAILABLE,
            ErrorInfo.newBuilder()
                .setDomain(ClassifyClient.ERROR_DOMAIN)
                .setReason("UPSTREAM_INTERNAL_ERROR")
                .putMetadata("http_status", "500")
                .putMetadata("resume_page_token", "tok-3")
                .build(),
            BadRequest.newBuilder()
                .addFieldViolations(
                    BadRequest.FieldViolation.newBuilder().setField("page_limit").setDescription("x"))
                .build(),
            RetryInfo.newBuilder()
                .setRetryDelay(com.google.protobuf.Duration.newBuilder().setSeconds(30).setNanos(5))
                .build());
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertEquals(Optional.of("tok-3"), ClassifyClient.resumeToken(e));
    assertEquals(Optional.of(500), ClassifyClient.upstreamHttpStatus(e));
    assertEquals("UPSTREAM_INTERNAL_ERROR", ClassifyClient.errorInfo(e).orElseThrow().getReason());
    assertEquals(
        List.of("page_limit"),
        ClassifyClient.badRequest(e).orElseThrow().getFieldViolationsList().stream()
            .map(BadRequest.FieldViolation::getField)
            .toList());
    assertEquals(Optional.of(Duration.ofSeconds(30, 5)), ClassifyClient.retryDelay(e));
  }

  @Test
  void absentDetailsAreEmpty() {
    StatusRuntimeException plain = Status.UNAVAILABLE.withDescription("no details").asRuntimeException();
    // StatusProto builds a google.rpc.Status from the code and message even without details.
    assertEquals(Status.Code.UNAVAILABLE.value(), ClassifyClient.rpcStatus(plain).orElseThrow().getCode());
    assertEquals(0, ClassifyClient.rpcStatus(plain).orElseThrow().getDetailsCount());
    assertTrue(ClassifyClient.errorInfo(plain).isEmpty());
    assertTrue(ClassifyClient.resumeToken(plain).isEmpty());
    assertTrue(ClassifyClient.retryDelay(plain).isEmpty());

    StatusRuntimeException noToken =
        error(Code.UNAVAILABLE, ErrorInfo.newBuilder().setDomain(ClassifyClient.ERROR_DOMAIN).build());
    assertTrue(ClassifyClient.resumeToken(noToken).isEmpty());
    assertTrue(ClassifyClient.upstreamHttpStatus(noToken).isEmpty());
    assertTrue(ClassifyClient.badRequest(noToken).isEmpty());
  }

  @Test
  void worksThroughWrappingExceptions() {
    StatusRuntimeException e =
        error(Code.RESOURCE_EXHAUSTED, RetryInfo.newBuilder()
            .setRetryDelay(com.google.protobuf.Duration.newBuilder().setSeconds(2)).build());
    RuntimeException wrapped = new RuntimeException("wrapped", e);
    assertEquals(Optional.of(Duration.ofSeconds(2)), ClassifyClient.retryDelay(wrapped));
  }
}
