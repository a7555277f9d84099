#!/usr/bin/env python3
"""A stock grpcio client on rkmd's Unix socket, with default options.

Usage: health_check.py SOCKET

Prints one line per check, for tests/tests/grpc_interop.rs to assert on:
  health <service or ""> <status>
  reflection <v1|v1alpha> <service> <service> ...
and exits 1 with the gRPC error if a call fails.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

TIMEOUT_SECONDS = 10

# grpcio-reflection ships only the v1alpha messages; v1's are the same
# messages on the wire under a new package, so the v1 method is called with
# them by its full path.
REFLECTION_METHODS = {
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}


def health(channel, service):
    stub = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(
        health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_SECONDS
    )
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f'health "{service}" {status}')


def reflection(channel, version):
    call = channel.stream_stream(
        REFLECTION_METHODS[version],
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    for response in call(iter([request]), timeout=TIMEOUT_SECONDS):
        if response.HasField("error_response"):
            raise RuntimeError(
                f"reflection {version}: {response.error_response.error_message}"
            )
        names = sorted(s.name for s in response.list_services_response.service)
        print(f"reflection {version} {' '.join(names)}")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: health_check.py SOCKET")
    # Default options on purpose: no grpc.default_authority override, so the
    # channel sends what grpcio sends for a unix: target.
    with grpc.insecure_channel("unix:" + sys.argv[1]) as channel:
        try:
            health(channel, "")
            health(channel, "rkm.v1.RecoveryService")
            reflection(channel, "v1")
            reflection(channel, "v1alpha")
        except grpc.RpcError as error:
            sys.exit(f"gRPC call failed: {error.code()} {error.details()}")


if __name__ == "__main__":
    main()
