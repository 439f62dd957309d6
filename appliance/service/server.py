"""Build the grpc.aio server: limits, TLS/mTLS, token auth, health, reflection."""
from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.config import ServerConfig
from appliance.delivery.lockout import Lockout
from appliance.service.auth import TokenAuthInterceptor, read_tokens
from appliance.service.interceptors import RequestGuardInterceptor
from appliance.service.speakers import SpeakersServicer
from appliance.service.servicers import (
    Rooms,
    ServiceHooks,
    SessionsServicer,
    SubtitlesServicer,
    add_subtitles_servicer,
)

SERVICES = [pb.DESCRIPTOR.services_by_name[name].full_name for name in ("Subtitles", "Sessions", "Speakers")]


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    return [
        ("grpc.so_reuseport", 0),  # a second daemon on the same port must fail, not share it
        # The transport cap is generous so an oversized chunk reaches the servicer and gets a
        # clear INVALID_ARGUMENT naming the limit, instead of a bare transport error.
        ("grpc.max_receive_message_length", max(1 << 20, 4 * config.max_message_bytes)),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),  # enforce: no ping floods
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls:
        return None
    ca = config.client_ca.read_bytes() if config.client_ca else None
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


class RoomHealth(health.aio.HealthServicer):
    """grpc's health servicer, plus forgetting a service (a room dropped after its retention):
    without it every room ever pushed would keep an entry."""

    async def forget(self, service: str) -> None:
        # grpc_health keeps statuses in _server_status (grpcio-health-checking 1.85); telling
        # watchers SERVICE_UNKNOWN first is what a Watch of a never-known service reports.
        await self._set(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        self._server_status.pop(service, None)


def build_server(
    config: ServerConfig, rooms: Rooms, health_servicer: RoomHealth, hooks: ServiceHooks | None = None,
    on_auth_failure=None, interceptors: list[grpc.aio.ServerInterceptor] | None = None,
    speakers: SpeakersServicer | None = None,
    lockout: Lockout | None = None,
) -> tuple[grpc.aio.Server, int]:
    """The server, bound but not started, serving `health_servicer` (which the daemon drives), and its port.
    `speakers` None: the Speakers service answers that enrolment is off.

    `lockout`: the failed-authentication record it shares with the other faces (default: one of
    its own, from config).

    Interceptors run in order, outermost first: the given ones (RPC counting), the token
    check (before any request is read), then the request guard."""
    chain = list(interceptors or [])
    if config.token_file is not None:
        lockout = lockout or Lockout(config.auth_max_failures, config.auth_lockout_seconds)
        chain.append(TokenAuthInterceptor(read_tokens(config.token_file), on_auth_failure, lockout))
    chain.append(RequestGuardInterceptor(config.request_seconds, config.push_idle_seconds,
                                         hooks.bad_input_seen if hooks is not None else None))
    server = grpc.aio.server(
        interceptors=chain,
        options=server_options(config),
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    add_subtitles_servicer(SubtitlesServicer(rooms, config, hooks), server)
    pb_grpc.add_SessionsServicer_to_server(SessionsServicer(rooms, hooks), server)
    pb_grpc.add_SpeakersServicer_to_server(speakers or SpeakersServicer(None, None, hooks=hooks), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.reflection:
        names = (*SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
    creds = credentials(config)
    port = server.add_secure_port(config.listen, creds) if creds else server.add_insecure_port(config.listen)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen} (address in use or not available)")
    return server, port
