"""Client-side resolution of a serving group's replicas, fed by the control plane.

Two ways reach replicas spread over several nodes:

- Kubernetes: the chart's inference ``Service`` selects the Ray worker pods on the
  replicas' gRPC port; the cluster's load balancing does the rest.
- Anywhere else (a bare Ray cluster, VMs): this resolver. It asks the control
  plane's ``GetStatus`` for the ready replicas of a group, and opens one gRPC
  channel over all their distinct addresses with the ``round_robin`` policy, so
  requests spread over every node. Replicas must advertise reachable addresses:
  run them with ``MODELPLANE_BIND_NODE_IP=true`` (each listens on its Ray node's IP).

``refresh()`` re-reads the directory and swaps the channel when the set of
addresses changed; call it periodically or after an UNAVAILABLE.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Sequence

import grpc

from modelplane.client import ModelplaneClient
from modelplane.v1 import inference_pb2_grpc

_OPTIONS: list[tuple[str, object]] = [
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def channel_target(addresses: Sequence[str]) -> str:
    """A gRPC target naming every address: ``ipv4:a:p,b:p`` (or ``ipv6:``, or ``dns:``).

    gRPC's static address lists take literal IPs only; a host name is resolved by
    DNS instead (one name, every record it has).
    """
    if not addresses:
        raise ValueError("addresses: no replica address to connect to")
    hosts = [address.rpartition(":")[0].strip("[]") for address in addresses]
    try:
        versions = {ipaddress.ip_address(host).version for host in hosts}
    except ValueError:
        if len(addresses) != 1:
            raise ValueError(
                f"addresses: host names cannot be listed ({', '.join(addresses)}); "
                "advertise IPs (MODELPLANE_BIND_NODE_IP=true) or use one DNS name"
            ) from None
        return f"dns:///{addresses[0]}"
    if versions == {4}:
        return "ipv4:" + ",".join(addresses)
    if versions == {6}:
        return "ipv6:" + ",".join(addresses)
    raise ValueError("addresses: mix of IPv4 and IPv6 replica addresses")


class ReplicaResolver:
    """One round-robin channel over the ready replicas of ``group``."""

    def __init__(self, control: ModelplaneClient, group: str = "default") -> None:
        self._control = control
        self._group = group
        self._lock = threading.Lock()
        self._addresses: tuple[str, ...] = ()
        self._channel: grpc.Channel | None = None

    def addresses(self) -> tuple[str, ...]:
        """Distinct addresses of the group's ready replicas, as the control plane sees them."""
        status = self._control.status()
        for entry in status.groups:
            if entry.group.name == self._group:
                return tuple(sorted({r.address for r in entry.replicas if r.ready}))
        known = ", ".join(g.group.name for g in status.groups) or "none"
        raise ValueError(f"group: unknown serving group {self._group!r} (known: {known})")

    def refresh(self) -> bool:
        """Re-resolves; True when the channel was replaced."""
        addresses = self.addresses()
        with self._lock:
            if addresses == self._addresses and self._channel is not None:
                return False
            old, self._channel = self._channel, grpc.insecure_channel(
                channel_target(addresses), options=_OPTIONS
            )
            self._addresses = addresses
        if old is not None:
            # In-flight calls on the old channel fail over to the caller's retry.
            old.close()
        return True

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self.refresh()
        assert self._channel is not None  # set by refresh, which raises otherwise
        return self._channel

    def inference_stub(self) -> inference_pb2_grpc.InferenceServiceStub:
        return inference_pb2_grpc.InferenceServiceStub(self.channel)

    def close(self) -> None:
        with self._lock:
            channel, self._channel = self._channel, None
            self._addresses = ()
        if channel is not None:
            channel.close()
