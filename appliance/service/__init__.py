"""The gRPC service: event log, fan-out, servicers, security, conversion to and from protobuf."""
