"""How every entry point reaches Ray: one reading of an address, one auth rule, one loopback pin.

Addresses, as a Ray user types them (`--address` or `RAY_ADDRESS`):

    HOST:PORT            the GCS (`ray start --head` prints it; port 6379 by default)
    ray://HOST:PORT      the Ray Client server (port 10001 by default)
    http(s)://HOST:PORT  the dashboard (port 8265): it offers the Jobs API, not a driver
                         connection, so `aar status` runs itself as a Ray job there and `aar run`
                         says, in one line, to submit the campaign with `ray job submit`
    auto                 the cluster last started on this machine, as `ray status` finds it

Auth. Ray 2.60 turns token auth on for a local cluster when `RAY_AUTH_MODE` is unset and then
writes `~/.ray/auth_token`, after which every later driver on the machine switches to token
auth. The rule, applied by `auth_mode` before every `ray.init` of the package: `RAY_AUTH_MODE`,
when set, is honoured everywhere (`token` on a real cluster, docs/clusters.md); when unset, an
embedded cluster (private to this process, on 127.0.0.1) runs with `disabled`, so no token is
written, and a driver joining a cluster uses token auth only when `RAY_AUTH_TOKEN` or
`RAY_AUTH_TOKEN_PATH` says so, never because a stray token file exists.

Loopback. Ray 2.60 on Linux rewrites a node IP or bootstrap address of 127.0.0.1 into the
machine's outbound address (`services.resolve_ip_for_localhost`), and its servers then listen on
every interface. It keeps 127.0.0.1 only while `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, a flag Ray
reads once at import: `pin_loopback` sets it in the environment (for the processes Ray starts)
and in the imported constant (for this one). Only for local clusters: a driver of a real
multi-node cluster must keep its routable address.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Literal

from aar_ray.errors import ConfigError

LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
AUTH_ENV = "RAY_AUTH_MODE"
FORMS = ("HOST:PORT (the GCS), ray://HOST:PORT (Ray Client), http://HOST:PORT (the dashboard's "
         "Jobs API) or auto")


def pin_loopback() -> None:
    """Keep 127.0.0.1 as this machine's Ray node IP (see the module docstring)."""
    from ray._private import ray_constants

    os.environ.update(LOOPBACK_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False


@dataclass(frozen=True)
class Address:
    kind: Literal["local", "gcs", "client", "dashboard"]
    value: str  # what `ray.init(address=...)` takes; the URL for the dashboard


def resolve(address: str | None, find_local: bool = False) -> Address:
    """`address` (else RAY_ADDRESS) as one of the forms above; none given means an embedded
    cluster ("local"), or with `find_local` the cluster last started here if there is one."""
    text = (address or os.environ.get("RAY_ADDRESS") or "").strip().rstrip("/")
    if text == "local" or (not text and not find_local):
        return Address("local", "local")
    if text in ("", "auto"):
        from ray._private.services import find_bootstrap_address

        found = find_bootstrap_address(None)  # /tmp/ray/ray_current_cluster, as `ray status`
        if found:
            return Address("gcs", found)
        if text == "auto":
            raise ConnectionError("no local Ray cluster found (address auto): start one with "
                                  "`ray start --head`, or give its address")
        return Address("local", "local")
    scheme, sep, rest = text.partition("://")
    if sep:
        kinds = {"http": "dashboard", "https": "dashboard", "ray": "client"}
        if scheme.lower() not in kinds or not rest:
            raise ConfigError(f"Ray address {text!r}: expected {FORMS}")
        return Address(kinds[scheme.lower()], text)  # type: ignore[arg-type]
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {text!r}: expected {FORMS}")
    return Address("gcs", text)


def auth_mode(embedded: bool) -> str:
    """The one auth rule (module docstring), set in os.environ so Ray and the `ray` processes
    this one starts read the same; returned for a runtime_env."""
    mode = os.environ.get(AUTH_ENV) or (
        "token" if not embedded and (os.environ.get("RAY_AUTH_TOKEN")
                                     or os.environ.get("RAY_AUTH_TOKEN_PATH")) else "disabled")
    os.environ[AUTH_ENV] = mode
    return mode


def unreachable(gcs: str) -> str | None:
    """Why a GCS `host:port` cannot be reached, or None: `ray.init` itself retries an
    unreachable address for minutes."""
    host, _, port = gcs.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as e:
        return str(e) or type(e).__name__
    return None


def join(address: Address, **init: Any) -> None:
    """`ray.init` on a running cluster (GCS or Ray Client) under the auth rule; a
    ConnectionError in one line when its GCS does not answer."""
    import ray

    if address.kind not in ("gcs", "client"):
        raise ConfigError(f"Ray address {address.value!r}: a driver joins a GCS or ray:// "
                          "address")
    auth_mode(embedded=False)
    if address.kind == "gcs":
        if address.value.rpartition(":")[0] in (LOOPBACK, "localhost"):
            pin_loopback()  # else Ray rewrites 127.0.0.1 to another interface and times out
        if (why := unreachable(address.value)) is not None:
            raise ConnectionError(f"cannot reach Ray at {address.value}: {why}")
    ray.init(address=address.value, **init)
