"""Where a comparison's work runs on Ray: connecting to a cluster (or starting a local one) and what it can reach.

``initlab compare CONFIG --ray [ADDRESS]``. The address is one of:

- ``local`` (``--ray`` alone): a Ray instance started here for this comparison, on 127.0.0.1 only;
- ``auto``: the cluster this machine already belongs to (Ray finds it: ``$RAY_ADDRESS``, or the
  cluster that ``ray start`` last started here);
- ``HOST:PORT``: the head node's GCS address (``ray start --head --port PORT``) of a cluster this
  machine is a node of;
- ``ray://HOST:PORT``: a cluster reached through Ray Client (``pip install 'ray[client]'``) from a
  machine outside it.

**Loopback stays loopback.** On Linux, Ray replaces 127.0.0.1 by the machine's outward address
(``resolve_ip_for_localhost``) unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is false when Ray is
imported; for ``local`` and loopback addresses `connect` sets it to ``0`` first, so that every Ray
process listens and connects on 127.0.0.1 alone. **An address where nothing answers** is an error
within seconds (`ClusterUnavailableError`; Ray itself retries for minutes): the address is tried with
a plain TCP connection first. Ray is imported here only, and only by `connect`.

**This user's token for this user's cluster.** Ray 2.60 turns token authentication on for a local
instance and writes the token to ``~/.ray/auth_token``; from then on ``ray start --head`` uses it too,
but a driver given an address sends it only with ``RAY_AUTH_MODE=token`` (Ray's rule: a token is not
sent to an address unasked). For a ``HOST:PORT`` on loopback whose listening sockets are all this
user's (``/proc/net/tcp``: Linux), `connect` does what Ray does for the cluster it finds itself
(``auto``): with ``RAY_AUTH_MODE`` unset and a token at hand, token authentication on. Such a process
could read the token file anyway, so nothing is disclosed. Anywhere else, a refused connection says to
set ``RAY_AUTH_MODE=token``.

>>> cluster = connect("local", num_cpus=2)          # doctest: +SKIP
>>> cluster.remote                                  # doctest: +SKIP
False
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path

from initlab.server import is_loopback

ADDRESS_FORMS = "local, auto, HOST:PORT or ray://HOST:PORT"

LOOPBACK_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""False (``0``) when Ray is imported: 127.0.0.1 is not replaced by the machine's outward address."""

AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
"""Ray's token authentication: ``token`` on, ``disabled`` off; unset, Ray decides (on for a new local instance)."""

PROBE_TIMEOUT = 3.0
"""Seconds a TCP connection to the cluster's address may take before the cluster counts as not answering."""


class ClusterUnavailableError(RuntimeError):
    """No Ray cluster answers at the address, or this process cannot use it; the message names the address and the
    fix."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A connected Ray cluster: its ``address`` as given, whether any of its nodes is another machine (``remote``:
    then a store on this machine's disk is out of the workers' reach), and its ``resources`` (``{"CPU": 2.0, ...}``)."""

    address: str
    remote: bool
    resources: dict


@dataclasses.dataclass(frozen=True)
class RayAddress:
    """A ``--ray`` address, parsed (`parse_address`): its ``kind`` (``local``, ``auto``, ``gcs`` for ``HOST:PORT``,
    ``client`` for ``ray://HOST:PORT``), ``host`` and ``port`` (``None`` for ``local`` and ``auto``), and the
    ``text`` as given (what it prints as)."""

    text: str
    kind: str
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        return self.text


def parse_address(address: str) -> RayAddress:
    """The `RayAddress` of a ``--ray`` address: one of `ADDRESS_FORMS`.

    >>> parse_address("127.0.0.1:6379")
    RayAddress(text='127.0.0.1:6379', kind='gcs', host='127.0.0.1', port=6379)

    Raises:
        TypeError: ``address`` is not a string.
        ValueError: it is none of `ADDRESS_FORMS`; the message names it.
    """
    if not isinstance(address, str):
        raise TypeError(f"Argument `address` must be a str ({ADDRESS_FORMS}). Received: address={address!r}")
    if address in ("local", "auto"):
        return RayAddress(address, address)
    kind, rest = ("client", address[len("ray://") :]) if address.startswith("ray://") else ("gcs", address)
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"Argument `address` must be {ADDRESS_FORMS} (a port in 1..65535). Received: address={address!r}"
        )
    return RayAddress(address, kind, host, int(port))


def connect(address: RayAddress | str = "local", num_cpus: int | None = None) -> Cluster:
    """Connects this process to the Ray cluster at ``address`` (see the module's docstring), or starts a local
    instance with ``num_cpus`` CPUs (default: this machine's); returns the `Cluster`.

    Raises:
        ValueError, TypeError: a malformed address (`parse_address`), or ``num_cpus`` with an existing cluster.
        ClusterUnavailableError: Ray is not installed, nothing answers at the address within `PROBE_TIMEOUT`
            seconds, Ray refuses the connection (the message says how to send a token where ``RAY_AUTH_MODE``
            is not ``token``), or Ray was imported before with 127.0.0.1 rewritten (loopback could not be kept).
    """
    if isinstance(address, str):
        address = parse_address(address)
    kind, host, port = address.kind, address.host, address.port
    if importlib.util.find_spec("ray") is None:
        raise ClusterUnavailableError("Ray is not installed here: pip install 'keras-initlab[ray]'")
    if num_cpus is not None and kind != "local":
        raise ValueError(
            f"Argument `num_cpus` applies to a local instance only. Received: num_cpus={num_cpus!r} "
            f"with address={address.text!r}"
        )
    loopback = kind == "local" or (host is not None and is_loopback(host))
    if loopback:
        _keep_loopback(address)
    if host is not None:
        _probe(address, host, port)
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "1")  # one connection attempt, not twenty
    own = kind == "gcs" and loopback and AUTH_MODE_VARIABLE not in os.environ and _listeners_are_mine(port)
    import ray

    if own:
        _use_own_token()
    try:
        if kind == "local":
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )  # the command's own lines only: not Ray's start-up notices
        else:
            ray.init(address=address.text, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError) as e:
        hint = ""
        if kind != "local" and os.environ.get(AUTH_MODE_VARIABLE, "").lower() != "token":
            hint = (
                f"; if the cluster uses token authentication, set {AUTH_MODE_VARIABLE}=token here, with the "
                "cluster's token in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
            )
        raise ClusterUnavailableError(f"cannot connect to the Ray cluster at {address}: {e}{hint}") from None
    return Cluster(address.text, _is_remote(kind), dict(ray.cluster_resources()))


def disconnect() -> None:
    """Disconnects this process from its Ray cluster; a local instance that `connect` started stops."""
    import ray

    ray.shutdown()


def _keep_loopback(address: RayAddress) -> None:
    """Makes Ray keep 127.0.0.1 (`LOOPBACK_VARIABLE`); too late once Ray is imported with it true."""
    if "ray" in sys.modules:
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            raise ClusterUnavailableError(
                f"Ray was imported in this process before {LOOPBACK_VARIABLE}=0 was set, so it would use this "
                f"machine's outward address instead of 127.0.0.1 for {address}; set {LOOPBACK_VARIABLE}=0 in the "
                "environment before Python starts"
            )
        return
    os.environ[LOOPBACK_VARIABLE] = "0"


def _probe(address: RayAddress, host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
    except OSError as e:
        raise ClusterUnavailableError(
            f"no Ray cluster answers at {address} ({type(e).__name__}: {e.strerror or e}). Start one there "
            "(ray start --head --port PORT), pass the address of a running one, "
            "or use --ray alone for a local instance."
        ) from None


def _use_own_token() -> None:
    """Turns Ray's token authentication on in this process where ``RAY_AUTH_MODE`` is unset and a token is at hand:
    Ray's rule for the cluster it finds itself (``auto``), without its notice on stderr."""
    from ray._private.authentication import authentication_token_setup

    notices = logging.getLogger(authentication_token_setup.__name__)
    level = notices.level
    notices.setLevel(logging.ERROR)
    try:
        authentication_token_setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        notices.setLevel(level)


def _listeners_are_mine(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` of this machine and every one that does is this user's (read from
    /proc/net/tcp and tcp6; False without them)."""
    owners = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:  # not Linux, or no IPv6
            continue
        for fields in map(str.split, lines):
            if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:  # 0A: LISTEN
                owners.add(int(fields[7]))
    return owners == {os.getuid()}


def _is_remote(kind: str) -> bool:
    """Whether the connected cluster has a node on another machine (Ray Client always counts as remote)."""
    import ray

    if kind == "client":
        return True
    here = socket.gethostname()
    return any(node["Alive"] and node["NodeManagerHostname"] != here for node in ray.nodes())


def check_store_reachable(uri: str, cluster: Cluster) -> None:
    """Refuses a tracking store on this machine's disk (SQLite, a file store) when ``cluster`` has nodes on
    other machines: their workers log the child runs and could not reach it.

    Raises:
        ClusterUnavailableError: naming the store and the fix (an MLflow server they can reach).
    """
    if cluster.remote and (uri.startswith(("sqlite:", "file:")) or "://" not in uri):
        raise ClusterUnavailableError(
            f"the Ray cluster at {cluster.address} has nodes on other machines, whose workers log the child runs: "
            f"they cannot reach the store {uri} on this machine's disk. Start an MLflow server they can reach "
            "(initlab serve --host HOST on a host of the cluster, with a login) and pass --tracking-uri http://HOST:PORT."
        )
