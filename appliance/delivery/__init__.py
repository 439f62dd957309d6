"""Delivery: each session's event log (seq, retention, resume) and its fan-out to subscribers.

Used by the session that publishes, read by every face (gRPC, HTTP); it imports neither.
"""
