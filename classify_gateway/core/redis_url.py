"""The Redis URL forms of CLASSIFY_GATEWAY_REDIS_URL, parsed: no client, no I/O.

Here, below `config`, so that Settings refuses a URL the gateway cannot serve at start-up
(one line naming REDIS_URL) with the same parser that state/redis_conn.py builds the
client from (docs/operations.md, "Redis URL forms").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

SINGLE_SCHEMES = ("redis", "rediss")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = SINGLE_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES
DEFAULT_PORTS = {"sentinel": 26379, "cluster": 6379}
# Query options of the Sentinel and Cluster forms: redis-py's names, so that a URL that
# works with `redis://` keeps its TLS options when it moves to Sentinel or Cluster.
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
BOOL_OPTIONS = ("ssl_check_hostname", "sentinel_auth")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class RedisTarget:
    """A parsed Sentinel or Cluster URL (`redis://` and `rediss://` are redis-py's own)."""

    kind: str  # "sentinel" | "cluster"
    tls: bool
    nodes: tuple[tuple[str, int], ...]  # sentinels, or the cluster's start-up nodes
    service: str = ""  # Sentinel's master name
    db: int = 0
    username: str | None = None
    password: str | None = None
    options: dict[str, str | bool] = field(default_factory=dict)


def _host_port(item: str, default: int) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"no host in {item!r}")
    try:
        number = int(port) if port else default
    except ValueError:
        raise ValueError(f"port of {item!r} is not a number") from None
    if not 0 < number < 65536:
        raise ValueError(f"port of {item!r} is out of range")
    return host, number


def parse_url(url: str) -> RedisTarget:
    """The Sentinel or Cluster target named by `url`; ValueError says what is wrong.

    `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<master>[/<db>][?opts]`
    `redis+cluster://[[user]:password@]host[:port][,host[:port]...][/0][?opts]`
    (`rediss+...` for TLS to every node, the sentinels included).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        raise ValueError("must start with redis+sentinel:// or redis+cluster:// (or rediss+)")
    kind = "sentinel" if scheme in SENTINEL_SCHEMES else "cluster"
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon and secret else None
    nodes = tuple(_host_port(h.strip(), DEFAULT_PORTS[kind]) for h in hosts.split(",") if h)
    if not nodes:
        raise ValueError("names no host")
    parts = [p for p in path.split("/") if p]
    service, db_text = "", "0"
    if kind == "sentinel":
        if not parts:
            raise ValueError("needs the master name: redis+sentinel://host:26379/<master>")
        service = unquote(parts[0])
        db_text = parts[1] if len(parts) > 1 else "0"
        extra = parts[2:]
    else:
        db_text = parts[0] if parts else "0"
        extra = parts[1:]
    if extra:
        raise ValueError(f"unexpected path {'/'.join(extra)!r}")
    if not db_text.isdigit():
        raise ValueError(f"database {db_text!r} is not a number")
    db = int(db_text)
    if kind == "cluster" and db != 0:
        raise ValueError("Redis Cluster has database 0 only")
    options: dict[str, str | bool] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in TLS_OPTIONS:
            options[name] = value
        elif name in BOOL_OPTIONS:
            if value.lower() not in _TRUE + _FALSE:
                raise ValueError(f"{name} must be true or false")
            options[name] = value.lower() in _TRUE
        else:
            raise ValueError(f"unknown option {name!r}")
    if "sentinel_auth" in options and kind != "sentinel":
        raise ValueError("sentinel_auth is for redis+sentinel:// only")
    return RedisTarget(
        kind, scheme.startswith("rediss"), nodes, service, db, username, password, options
    )


def url_problem(url: str) -> str | None:
    """Why `url` cannot be served (for Settings' validation), or None."""
    scheme = url.partition("://")[0]
    if scheme in SINGLE_SCHEMES:
        return None
    if scheme not in SCHEMES:
        return "must start with redis://, rediss://, redis+sentinel:// or redis+cluster://"
    try:
        parse_url(url)
    except ValueError as exc:
        return str(exc)
    return None
