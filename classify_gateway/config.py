"""One settings object for the gateway, read from the environment and validated at start.

Every setting has an environment variable `CLASSIFY_GATEWAY_<NAME>`; command-line
flags may override some of them. A bad value stops start-up with one line that names
the variable, because a gateway that starts with a half-understood configuration fails
later, under load, in a way that is much harder to read.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import math
import os
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from classify_gateway.core.redis_url import url_problem

PREFIX = "CLASSIFY_GATEWAY_"
V1_2_URL = "https://api.twelvelabs.io/v1.2"
V1_3_URL = "https://api.twelvelabs.io/v1.3"
UPSTREAM_APIS = ("v1.2", "v1.3")
FOLLOW = -1  # a v1.3 endpoint's rate or burst left unset: UPSTREAM_RPS / UPSTREAM_BURST
T = TypeVar("T")
# gRPC takes its channel arguments as C ints (and durations as milliseconds in one), so
# every number must fit: a setting that cannot is refused here, naming it, instead of
# an OverflowError with a traceback when the server is built.
INT_MAX = 2**31 - 1
MAX_SECONDS = 2_000_000.0  # about 23 days; 2,000,000,000 ms still fits a C int
MAX_CONCURRENT_STREAMS = 1_000_000  # x4 is grpc.server.max_pending_requests (a C int)
# What an HTTP header value may hold for an API key: visible ASCII, no spaces. A key with
# a newline, NUL or a non-ASCII character could never be sent (and must never be split
# into two headers), so it is refused at start-up (configured) or per call (a caller's).
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _parse_int(raw: str) -> int:
    value = int(raw.strip())
    if not -INT_MAX <= value <= INT_MAX:
        raise ValueError(f"out of range (at most {INT_MAX})")
    return value


def _parse_float(raw: str) -> float:
    value = float(raw.strip())
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if abs(value) > MAX_SECONDS:
        raise ValueError(f"out of range (at most {MAX_SECONDS:.0f})")
    return value


def valid_api_key(key: str) -> bool:
    """True for a key that can be sent as one HTTP header value, unchanged."""
    return _HEADER_TOKEN.fullmatch(key) is not None


def url_secret(url: str) -> str:
    """The password of a URL's user:password ('' when none; the whole user part when it has
    no colon, as in https://TOKEN@host), so that logs can redact it wherever it shows."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return ""
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return ""
    user, colon, password = userinfo.partition(":")
    return password if colon else user


def proxy_for(upstream_url: str, configured: str, environ: Mapping[str, str]) -> str | None:
    """The http:// proxy the upstream is reached through, or None for a direct connection.

    `configured` (CLASSIFY_GATEWAY_UPSTREAM_PROXY) first, else HTTPS_PROXY (HTTP_PROXY for
    an http:// upstream), lower case before upper as curl and urllib read them. NO_PROXY
    (comma-separated hosts, domain suffixes with or without a leading dot, host:port, `*`;
    no CIDR ranges) exempts the upstream from either.
    """
    parts = urlsplit(upstream_url)

    def env(name: str) -> str:
        return environ.get(name.lower()) or environ.get(name.upper()) or ""

    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for raw in env("no_proxy").split(","):
        entry = raw.strip().lower()
        name, _, only_port = entry.partition(":") if entry.count(":") == 1 else (entry, "", "")
        name = name.strip("[]").lstrip(".")
        if entry == "*" or (
            name
            and (host == name or host.endswith("." + name))
            and (not only_port or only_port == str(port))
        ):
            return None
    if configured:
        return configured
    return env(f"{parts.scheme}_proxy") or None


def _proxy_problem(url: str) -> str | None:
    if not url:
        return None
    if _url_problem(url) is not None or urlsplit(url).scheme != "http":
        return "must be an http://[user:password@]host:port URL (a CONNECT proxy)"
    return None


def _ca_problem(path: str) -> str | None:
    if not path:
        return None
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        return f"cannot be loaded as PEM certificates ({exc.strerror or exc})"
    return None


def _url_problem(url: str) -> str | None:
    """Why `url` cannot be the upstream base URL, or None."""
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "must be ASCII without spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if not parts.hostname:
        return "has no host"
    if parts.query or parts.fragment:
        return "must not have a query or fragment (paths are appended to it)"
    return None


def check_anchors(anchors: tuple[tuple[float, float], ...]) -> None:
    """ValueError unless `anchors` make a monotone cosine -> score map (v1.3 backend).

    Here rather than beside the map (backends/v1_3/scoring.py) so that a bad
    CLASSIFY_GATEWAY_V13_CALIBRATION is one line at start without settings importing a
    backend; the map itself checks its anchors with this function too.
    """
    if len(anchors) < 2:
        raise ValueError("needs at least two anchors")
    for (c0, s0), (c1, s1) in itertools.pairwise(anchors):
        if not c1 > c0:
            raise ValueError("anchor cosines must increase")
        if s1 < s0:
            raise ValueError("anchor scores must not decrease")
    for c, s in anchors:
        if not (-1.0 <= c <= 1.0 and 0.0 <= s <= 100.0):
            raise ValueError("anchors are cosine:score with cosine in -1..1, score in 0..100")


def parse_anchors(text: str) -> tuple[tuple[float, float], ...]:
    """`"0.10:0,0.25:65,0.40:100"` -> checked (cosine, score) anchors (the setting's form)."""
    anchors: list[tuple[float, float]] = []
    for part in text.split(","):
        cos, sep, score = part.strip().partition(":")
        if not sep:
            raise ValueError(f"{part.strip()!r} is not cosine:score")
        anchors.append((float(cos), float(score)))
    check_anchors(tuple(anchors))
    return tuple(anchors)


def _calibration_problem(text: str) -> str | None:
    """Why `text` is not a v1.3 calibration (cosine:score anchors), or None."""
    try:
        parse_anchors(text)
    except ValueError as exc:
        return f"is invalid ({exc}); expected cosine:score anchors, e.g. 0.10:0,0.23:65,0.32:100"
    return None


def _parse_listen(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:50051")
    return raw


@dataclass(frozen=True)
class Settings:
    """Every knob of the gateway. Durations are in seconds."""

    # Upstream
    upstream_url: str = V1_2_URL
    # Which Twelve Labs API answers: v1.2 classify, or v1.3 embeddings scored by the gateway
    # (docs/design.md, "Two backends"). In v1.3 mode UPSTREAM_URL defaults to V1_3_URL.
    upstream_api: str = "v1.2"
    api_key: str = field(default="", repr=False)
    allow_caller_api_key: bool = False
    upstream_timeout: float = 30.0
    upstream_connect_timeout: float = 5.0
    upstream_max_connections: int = 100
    # Egress (docs/operations.md): an http:// proxy whose CONNECT tunnels carry every
    # upstream connection ("" = HTTPS_PROXY / HTTP_PROXY; NO_PROXY exempts the upstream
    # from either), and a CA bundle to verify the upstream against instead of the system's.
    upstream_proxy: str = field(default="", repr=False)
    upstream_ca_file: str = ""
    # Deadlines
    default_deadline: float = 300.0
    # Retries (AIP-194 style: exponential backoff with full jitter, bounded by the deadline)
    retry_max_attempts: int = 4
    retry_initial_backoff: float = 0.2
    retry_max_backoff: float = 5.0
    retry_multiplier: float = 2.0
    # Rate limiting toward the upstream (process-wide)
    upstream_max_concurrency: int = 64
    upstream_rps: float = 0.0  # 0 = no requests-per-second cap
    upstream_burst: int = 10
    # v1.3 limits each endpoint category on its own (upstream-v13.md 1.8): a quota bucket
    # each for embed-v2 and the video listings/retrievals. Unset (-1): UPSTREAM_RPS/BURST.
    v13_embed_rps: float = -1.0
    v13_embed_burst: int = -1
    v13_videos_rps: float = -1.0
    v13_videos_burst: int = -1
    # Shared state across replicas and workers (docs/operations.md, "Shared quota")
    redis_url: str = field(default="", repr=False)  # "" = in-process state only
    redis_password: str = field(default="", repr=False)
    redis_timeout_ms: int = 100
    redis_key_prefix: str = "classify-gateway"
    # Replicas the quota is divided by while Redis has not answered since start (later:
    # the replicas last seen alive in Redis).
    fallback_replicas: int = 1
    upstream_daily_quota: int = 0  # 0 = no daily budget
    caller_identity: str = "none"  # none | xfcc | metadata:<key>
    caller_weights: str = ""  # path of a JSON or YAML file {identity: weight}
    workers: int = 1
    # Coalescing and page cache (docs/design.md, "Spending the quota once")
    coalesce: bool = True  # share chains of identical calls in flight; off only for A/B runs
    cache_ttl: float = 300.0  # seconds a page stays cached; 0 = no cache (coalescing stays on)
    cache_max_bytes: int = 64 * 1024 * 1024  # memory bound of the in-process cache (LRU)
    coalesce_buffer_pages: int = 16  # pages a shared chain holds for its slower readers
    chain_lease: float = 10.0  # with Redis: a replica's claim on a chain, renewed while it fetches
    # Serving
    listen: str = "0.0.0.0:50051"
    metrics_listen: str = "0.0.0.0:9464"
    max_concurrent_streams: int = 2000
    max_pages_cap: int = 10000
    reflection: bool = True
    drain_grace: float = 25.0
    unhealthy_after: float = 30.0  # NOT_SERVING after the upstream failed every call this long
    # Connection management for life behind a mesh
    keepalive_time: float = 60.0
    keepalive_timeout: float = 20.0
    keepalive_permit_without_calls: bool = True
    min_ping_interval: float = 10.0
    max_connection_idle: float = 600.0
    max_connection_age: float = 3600.0
    max_connection_age_grace: float = 3600.0
    max_receive_message_bytes: int = 4 * 1024 * 1024
    max_send_message_bytes: int = 16 * 1024 * 1024
    # Cap on one upstream answer's body; 0 = derived from MAX_SEND_MESSAGE_BYTES.
    max_upstream_body_bytes: int = 0
    # The v1.3 backend (docs/design.md, "v1.3: calibration" and "v1.3: caches and tokens")
    v13_calibration: str = "0.10:0,0.215:65,0.26:75,0.32:90,0.50:100"  # cosine:score anchors
    v13_model: str = "marengo3.0"
    v13_page_ttl: float = 300.0  # lifetime of the page tokens the gateway mints
    v13_text_embedding_ttl: float = 7 * 86400.0  # prompt embeddings: deterministic per model
    v13_segment_ttl: float = 3600.0  # a video's segment embeddings (re-indexing changes them)
    v13_cache_max_bytes: int = 256 * 1024 * 1024  # in-process embedding cache (LRU)
    v13_fetch_concurrency: int = 8  # upstream requests one classification has in flight
    # Observability
    log_level: str = "INFO"
    tracing_exporter: str = "none"  # none | console | otlp (then OTEL_* env)
    service_name: str = "classify-gateway"

    def validate(self) -> Settings:
        """Raise ConfigError naming the first bad setting; return self."""
        redis_problem = url_problem(self.redis_url) if self.redis_url else None
        checks: list[tuple[str, bool, str]] = [
            (
                "UPSTREAM_URL",
                (url_why := _url_problem(self.upstream_url)) is None,
                str(url_why),
            ),
            (
                "UPSTREAM_PROXY",
                (proxy_why := _proxy_problem(self.upstream_proxy)) is None,
                str(proxy_why),
            ),
            (
                "UPSTREAM_CA_FILE",
                (ca_why := _ca_problem(self.upstream_ca_file)) is None,
                str(ca_why),
            ),
            (
                "API_KEY",
                bool(self.api_key) or self.allow_caller_api_key,
                "is required (or CLASSIFY_GATEWAY_API_KEY_FILE, or allow callers' keys with "
                "CLASSIFY_GATEWAY_ALLOW_CALLER_API_KEY=true)",
            ),
            (
                "API_KEY",
                not self.api_key or valid_api_key(self.api_key),
                "is not valid in an HTTP header (visible ASCII only: no spaces, newlines, "
                "control or non-ASCII characters)",
            ),
            ("UPSTREAM_API", self.upstream_api in UPSTREAM_APIS, "must be v1.2 or v1.3"),
            (
                "V13_CALIBRATION",
                (cal_why := _calibration_problem(self.v13_calibration)) is None,
                str(cal_why),
            ),
            ("V13_MODEL", bool(self.v13_model), "must not be empty"),
            ("V13_PAGE_TTL", 10 <= self.v13_page_ttl <= 86400, "must be 10..86400"),
            ("V13_TEXT_EMBEDDING_TTL", self.v13_text_embedding_ttl > 0, "must be > 0"),
            ("V13_SEGMENT_TTL", self.v13_segment_ttl > 0, "must be > 0"),
            ("V13_CACHE_MAX_BYTES", self.v13_cache_max_bytes >= 0, "must be >= 0"),
            ("V13_FETCH_CONCURRENCY", 1 <= self.v13_fetch_concurrency <= 64, "must be 1..64"),
            ("UPSTREAM_TIMEOUT", self.upstream_timeout > 0, "must be > 0"),
            ("UPSTREAM_CONNECT_TIMEOUT", self.upstream_connect_timeout > 0, "must be > 0"),
            ("UPSTREAM_MAX_CONNECTIONS", self.upstream_max_connections >= 1, "must be >= 1"),
            ("DEFAULT_DEADLINE", self.default_deadline > 0, "must be > 0"),
            ("RETRY_MAX_ATTEMPTS", 1 <= self.retry_max_attempts <= 20, "must be 1..20"),
            ("RETRY_INITIAL_BACKOFF", self.retry_initial_backoff >= 0, "must be >= 0"),
            (
                "RETRY_MAX_BACKOFF",
                self.retry_max_backoff >= self.retry_initial_backoff,
                "must be >= RETRY_INITIAL_BACKOFF",
            ),
            ("RETRY_MULTIPLIER", self.retry_multiplier >= 1, "must be >= 1"),
            ("UPSTREAM_MAX_CONCURRENCY", self.upstream_max_concurrency >= 1, "must be >= 1"),
            ("UPSTREAM_RPS", self.upstream_rps >= 0, "must be >= 0 (0 = no cap)"),
            ("UPSTREAM_BURST", self.upstream_burst >= 1, "must be >= 1"),
            *(
                (
                    f"V13_{name.upper()}_RPS",
                    rps >= 0 or rps == FOLLOW,
                    "must be >= 0 (0 = no cap), or unset for UPSTREAM_RPS",
                )
                for name, rps in (("embed", self.v13_embed_rps), ("videos", self.v13_videos_rps))
            ),
            *(
                (
                    f"V13_{name.upper()}_BURST",
                    burst >= 1 or burst == FOLLOW,
                    "must be >= 1, or unset for UPSTREAM_BURST",
                )
                for name, burst in (
                    ("embed", self.v13_embed_burst),
                    ("videos", self.v13_videos_burst),
                )
            ),
            ("REDIS_URL", redis_problem is None, redis_problem or ""),
            ("REDIS_TIMEOUT_MS", 1 <= self.redis_timeout_ms <= 60000, "must be 1..60000"),
            ("REDIS_KEY_PREFIX", bool(self.redis_key_prefix), "must not be empty"),
            ("FALLBACK_REPLICAS", 1 <= self.fallback_replicas <= 10000, "must be 1..10000"),
            ("UPSTREAM_DAILY_QUOTA", self.upstream_daily_quota >= 0, "must be >= 0 (0 = none)"),
            (
                "CALLER_IDENTITY",
                self.caller_identity in {"none", "xfcc"}
                or (
                    self.caller_identity.startswith("metadata:")
                    and len(self.caller_identity) > len("metadata:")
                ),
                "must be none, xfcc or metadata:<key>",
            ),
            ("WORKERS", 1 <= self.workers <= 64, "must be 1..64"),
            ("CACHE_TTL", self.cache_ttl >= 0, "must be >= 0 (0 = no cache)"),
            ("CACHE_MAX_BYTES", self.cache_max_bytes >= 0, "must be >= 0"),
            ("COALESCE_BUFFER_PAGES", self.coalesce_buffer_pages >= 1, "must be >= 1"),
            ("CHAIN_LEASE", self.chain_lease > 0, "must be > 0"),
            (
                "MAX_CONCURRENT_STREAMS",
                1 <= self.max_concurrent_streams <= MAX_CONCURRENT_STREAMS,
                f"must be 1..{MAX_CONCURRENT_STREAMS}",
            ),
            ("MAX_PAGES_CAP", self.max_pages_cap >= 1, "must be >= 1"),
            ("DRAIN_GRACE", self.drain_grace >= 0, "must be >= 0"),
            ("UNHEALTHY_AFTER", self.unhealthy_after > 0, "must be > 0"),
            ("KEEPALIVE_TIME", self.keepalive_time > 0, "must be > 0"),
            ("KEEPALIVE_TIMEOUT", self.keepalive_timeout > 0, "must be > 0"),
            ("MIN_PING_INTERVAL", self.min_ping_interval > 0, "must be > 0"),
            ("MAX_CONNECTION_IDLE", self.max_connection_idle > 0, "must be > 0"),
            ("MAX_CONNECTION_AGE", self.max_connection_age > 0, "must be > 0"),
            ("MAX_CONNECTION_AGE_GRACE", self.max_connection_age_grace >= 0, "must be >= 0"),
            (
                "MAX_RECEIVE_MESSAGE_BYTES",
                self.max_receive_message_bytes >= 1024,
                "must be >= 1024",
            ),
            ("MAX_SEND_MESSAGE_BYTES", self.max_send_message_bytes >= 1024, "must be >= 1024"),
            (
                "MAX_UPSTREAM_BODY_BYTES",
                self.max_upstream_body_bytes == 0 or self.max_upstream_body_bytes >= 1024,
                "must be 0 (twice MAX_SEND_MESSAGE_BYTES plus 1 MiB) or >= 1024",
            ),
            (
                "LOG_LEVEL",
                self.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"},
                "must be DEBUG, INFO, WARNING or ERROR",
            ),
            (
                "TRACING_EXPORTER",
                self.tracing_exporter in {"none", "console", "otlp"},
                "must be none, console or otlp",
            ),
        ]
        # Whatever the parser let through (overrides skip it), no number may overflow.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if isinstance(value, int) and not -INT_MAX <= value <= INT_MAX:
                checks.insert(0, (f.name.upper(), False, f"is out of range (at most {INT_MAX})"))
            if isinstance(value, float) and not (
                math.isfinite(value) and abs(value) <= MAX_SECONDS
            ):
                checks.insert(
                    0, (f.name.upper(), False, f"must be finite, at most {MAX_SECONDS:.0f}")
                )
        for name, ok, why in checks:
            if not ok:
                raise ConfigError(f"{PREFIX}{name} {why}")
        return self

    @property
    def upstream_body_cap(self) -> int:
        """Bytes of one upstream body the gateway reads before it gives up on it.

        By default a little above the JSON of the largest page that fits
        MAX_SEND_MESSAGE_BYTES (a page's JSON is 1.2 to 2.8 times its proto, the large
        pages, which are mostly clips, near the low end): twice that, plus 1 MiB.
        """
        if self.max_upstream_body_bytes:
            return self.max_upstream_body_bytes
        return 2 * self.max_send_message_bytes + 1024 * 1024

    @property
    def endpoint_rates(self) -> dict[str, tuple[float, int]]:
        """(rps, burst) of each upstream endpoint category with a quota bucket of its own
        (the v1.3 backend's `embed` and `videos`); unset ones follow UPSTREAM_RPS/BURST."""

        def rate(rps: float, burst: int) -> tuple[float, int]:
            return (
                self.upstream_rps if rps == FOLLOW else rps,
                self.upstream_burst if burst == FOLLOW else burst,
            )

        return {
            "embed": rate(self.v13_embed_rps, self.v13_embed_burst),
            "videos": rate(self.v13_videos_rps, self.v13_videos_burst),
        }

    @property
    def upstream_base(self) -> str:
        return self.upstream_url.rstrip("/")

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict that is safe to log: the key is never included."""
        out = dataclasses.asdict(self)
        out["api_key"] = "<set>" if self.api_key else "<unset>"
        out["redis_url"] = redact_url(self.redis_url)
        out["redis_password"] = "<set>" if self.redis_password else "<unset>"
        out["upstream_url"] = redact_url(self.upstream_url)
        out["upstream_proxy"] = redact_url(self.upstream_proxy)
        return out


def redact_url(url: str) -> str:
    """`url` with any password replaced, fit for logs (`redis://:<redacted>@host:6379/0`)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    safe = f"{user}:<redacted>" if colon else "<redacted>"
    return f"{scheme}://{safe}@{hostport}{slash}{path}"


_PARSERS: dict[type, Callable[[str], Any]] = {
    str: str,
    int: _parse_int,
    float: _parse_float,
    bool: _parse_bool,
}


def _secret_file(setting: str, path: str) -> str:
    """A secret mounted as a file (`*_FILE` settings), stripped; one line of ConfigError
    naming the setting when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{PREFIX}{setting} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{PREFIX}{setting} is not UTF-8 text") from None


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build and validate Settings from `CLASSIFY_GATEWAY_*` variables and explicit overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    hints = {f.name: f.type for f in dataclasses.fields(Settings)}
    type_map = {"str": str, "int": int, "float": float, "bool": bool}
    for name, hint in hints.items():
        var = PREFIX + name.upper()
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        parser = _PARSERS[type_map[str(hint)]]
        try:
            values[name] = parser(raw)
        except ValueError as exc:
            raise ConfigError(f"{var} is invalid: {exc}") from None
    key_file = env.get(PREFIX + "API_KEY_FILE")
    if key_file and "api_key" not in values:
        values["api_key"] = _secret_file("API_KEY_FILE", key_file)
    # Read only when Redis is in use: the deployment mounts the password's Secret as
    # optional, so a gateway without Redis starts without that Secret.
    password_file = env.get(PREFIX + "REDIS_PASSWORD_FILE")
    redis_url = overrides.get("redis_url") or values.get("redis_url")
    if password_file and redis_url and "redis_password" not in values:
        values["redis_password"] = _secret_file("REDIS_PASSWORD_FILE", password_file)
    for key, var in (("listen", "LISTEN"), ("metrics_listen", "METRICS_LISTEN")):
        # A flag left unset is an override of None (cli.py passes every flag): the
        # environment's value must be checked then, not skipped.
        raw_listen = overrides.get(key)
        if raw_listen is None:
            raw_listen = values.get(key)
        if raw_listen is not None:
            try:
                _parse_listen(raw_listen)
            except ValueError as exc:
                raise ConfigError(f"{PREFIX}{var} is invalid: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("upstream_api") == "v1.3" and "upstream_url" not in values:
        values["upstream_url"] = V1_3_URL
    if "log_level" in values:
        values["log_level"] = str(values["log_level"]).upper()
    settings = Settings(**values).validate()
    if not settings.upstream_proxy:
        scheme = urlsplit(settings.upstream_url).scheme
        from_environment = proxy_for(settings.upstream_url, "", env) or ""
        why = _proxy_problem(from_environment)
        if why is not None:
            raise ConfigError(f"{scheme.upper()}_PROXY (the upstream's egress proxy) {why}")
    return settings


def check_listen(var: str, listen: str) -> None:
    """Refuse, naming the variable, a listen address that cannot be bound (host unknown,
    port in use, no permission), before the server tries and fails with a traceback."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"{PREFIX}{var} host {host!r} cannot be resolved ({exc})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            why = (
                "is in use"
                if exc.errno == errno.EADDRINUSE
                else f"cannot be bound ({exc.strerror})"
            )
            raise ConfigError(f"{PREFIX}{var} {listen} {why}") from None


def secrets_of(settings: Settings) -> list[str]:
    """The Redis secrets the log formatter must redact, should they ever appear."""
    out = [settings.redis_password] if settings.redis_password else []
    _, sep, rest = settings.redis_url.partition("://")
    userinfo, at, _ = rest.partition("/")[0].rpartition("@")
    if sep and at and ":" in userinfo:
        password = userinfo.partition(":")[2]
        if password:
            out.append(password)
            if unquote(password) != password:
                out.append(unquote(password))
    return out
