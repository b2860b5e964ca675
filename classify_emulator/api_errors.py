"""Upstream error bodies, with the documented codes and message patterns only.

The contract forbids inventing classify-specific codes (no `index_not_exists`,
no page-token code): every failure maps to one of the general codes below, with
the vendor's wording, so clients that parse messages see what upstream sends.
"""

from __future__ import annotations

API_KEY_INVALID_MESSAGE = (
    "API Key is either invalid or expired. Please check your API key or generate a new one "
    "from the dashboard and try again."
)
TOO_MANY_REQUESTS_MESSAGE = "You have exceeded the rate limit. Please try again later."
INTERNAL_ERROR_MESSAGE = "An internal error occurred. Please try again later."


class ApiError(Exception):
    """An upstream-style error answer: HTTP status plus `{code, message}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def parameter_invalid(parameter: str) -> ApiError:
    return ApiError(400, "parameter_invalid", f"The {parameter} parameter is invalid.")


def parameter_not_provided(parameter: str) -> ApiError:
    return ApiError(
        400,
        "parameter_not_provided",
        f"The {parameter} parameter is required but was not provided.",
    )


def parameter_unknown(parameter: str) -> ApiError:
    return ApiError(400, "parameter_unknown", f"The {parameter} parameter is unknown.")


def resource_not_exist(resource_id: str, collection: str) -> ApiError:
    return ApiError(
        404, "resource_not_exist", f"Resource with id {resource_id} does not exist in {collection}."
    )


def api_key_invalid() -> ApiError:
    return ApiError(401, "api_key_invalid", API_KEY_INVALID_MESSAGE)


def too_many_requests() -> ApiError:
    return ApiError(429, "too_many_requests", TOO_MANY_REQUESTS_MESSAGE)


def default_code(status: int) -> tuple[str, str]:
    """Code and message for an injected `status` fault that names neither."""
    if status == 400:
        return "parameter_invalid", "The request contains some invalid parameters."
    if status == 401:
        return "api_key_invalid", API_KEY_INVALID_MESSAGE
    if status == 404:
        return "resource_not_exist", "The requested resource does not exist."
    if status == 429:
        return "too_many_requests", TOO_MANY_REQUESTS_MESSAGE
    if status >= 500:
        return "internal_error", INTERNAL_ERROR_MESSAGE
    return "request_failed", f"The request failed with HTTP status {status}."
