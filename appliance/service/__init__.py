"""The gRPC face: server, servicers, auth/TLS, interceptors, domain⇄protobuf conversion, and the client side."""
