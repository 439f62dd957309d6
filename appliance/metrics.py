"""Every Prometheus metric of the appliance, defined once, on an injected registry.

Events (latencies, inference calls, events sent, RPC outcomes, faults) are observed
where they happen through `Metrics`. State that already lives in the sessions
(backlog, real-time factor, capture counters, subscribers) is read at scrape time by
`SessionCollector`, so the pipeline keeps no second copy of it and series of
forgotten sessions disappear on their own (labels stay bounded).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance import __version__
from appliance.subtitles.events import SessionState

# Caption lag: the targets are 0.5 s (partial) and 1-2 s (final); broadcast caps delay at 3 s.
LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
# Fan-out delivery: fine around the 50 ms goal (1,000 subscribers of a room), coarse beyond it.
DELIVERY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.partial_word_latency = Histogram(
            "appliance_partial_word_latency_seconds",
            "Time from a word's end being captured to it first being shown (partial or final).",
            ["session"], buckets=LATENCY_BUCKETS, registry=registry)
        self.final_word_latency = Histogram(
            "appliance_final_word_latency_seconds",
            "Time from a word's end being captured to it being sent as final.",
            ["session"], buckets=LATENCY_BUCKETS, registry=registry)
        self.speaker_label_latency = Histogram(
            "appliance_speaker_label_latency_seconds",
            "Time from a word's end being captured to its speaker label being final.",
            ["session"], buckets=LATENCY_BUCKETS, registry=registry)
        self.inference = Histogram(
            "appliance_inference_seconds", "Wall time of one model call.",
            ["model", "provider"], buckets=INFERENCE_BUCKETS, registry=registry)
        self.events_sent = Counter(
            "appliance_events_sent_total", "Subtitle events written to subscribers.", ["kind"], registry=registry)
        self._events_sent_by_kind: dict[str, Counter] = {}
        # The server's own part of a subscriber's delay, whatever the client and network add.
        self.delivery_delay = Histogram(
            "appliance_delivery_delay_seconds",
            "From an event's creation to the start of its write to a live subscriber's connection (gRPC or SSE), per delivery.",
            buckets=DELIVERY_BUCKETS, registry=registry)
        self.subscribers_ended_slow = Counter(
            "appliance_subscribers_ended_slow_total",
            "Subscribers ended with RESOURCE_EXHAUSTED because they fell too far behind.",
            ["session"], registry=registry)
        self.rpcs = Counter(
            "grpc_server_handled_total", "RPCs completed on the server, by method and status code.",
            ["grpc_service", "grpc_method", "grpc_code"], registry=registry)
        self.http_requests = Counter(
            "appliance_http_requests_total",
            "HTTP requests completed, by route template (not the raw path), method and status code.",
            ["route", "method", "code"], registry=registry)
        self.auth_failures = Counter(
            "appliance_auth_failures_total", "Calls and requests refused for a missing or invalid token, or from a locked-out address.", ["grpc_method"],
            registry=registry)
        self.bad_input = Counter(
            "appliance_bad_input_total", "Requests refused as malformed (bad audio format, bad chunk).",
            ["grpc_method"], registry=registry)
        self.transcription_refused_total = Counter(
            "appliance_transcription_refused_total",
            "Uploads to /v1/audio/transcriptions refused before being read (reason: queue_full).",
            ["reason"], registry=registry)
        self.transcription_files_in = Gauge(
            "appliance_transcription_files",
            "Files in /v1/audio/transcriptions: being uploaded, waiting or being transcribed.",
            registry=registry)
        self.build = Info("appliance_build", "Version of the appliance.", registry=registry)
        self.build.info({"version": __version__})
        self.model = Gauge(
            "appliance_model_info", "Models loaded, their pinned hash and where they run (value 1).",
            ["name", "sha256", "provider"], registry=registry)

    # --- the hooks the servicers call (service.servicers.ServiceHooks) ---

    def event_sent(self, event_kind: str, delay: float | None) -> None:
        """An event written to a subscriber; `delay`: seconds from its creation to the start of
        the write if it went out live (None: replayed to a subscriber that joined or resumed later)."""
        # Once per delivery (1,000 subscribers: 1,000 times an event): the labelled child is
        # looked up once per kind, not per call.
        child = self._events_sent_by_kind.get(event_kind)
        if child is None:
            child = self._events_sent_by_kind[event_kind] = self.events_sent.labels(event_kind)
        child.inc()
        if delay is not None:
            self.delivery_delay.observe(max(0.0, delay))

    def subscriber_ended_slow(self, session_id: str) -> None:
        self.subscribers_ended_slow.labels(session_id).inc()

    def bad_input_seen(self, method: str, reason: str) -> None:
        self.bad_input.labels(method).inc()

    def http_request(self, route: str, method: str, status: int) -> None:
        self.http_requests.labels(route, method, str(status)).inc()

    def transcription_refused(self, reason: str) -> None:
        self.transcription_refused_total.labels(reason).inc()

    def transcription_files(self, count: int) -> None:
        self.transcription_files_in.set(count)

    def auth_failed(self, method: str) -> None:
        """`method`: a gRPC method's name ('List'), an HTTP route template ('/events/{session}')
        or 'asr-streaming' (the Kyutai WebSocket)."""
        self.auth_failures.labels(method).inc()


def _family(kind: type, name: str, doc: str, rows: Iterable[tuple[str, float]]) -> Metric:
    family = kind(name, doc, labels=["session"])
    for session_id, value in rows:
        family.add_metric([session_id], value)
    return family


class SessionCollector(Collector):
    """Per-session state read at scrape time from the live sessions."""

    def __init__(self, sessions: Callable[[], Iterable]):
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        sessions = list(self._sessions())

        def rows(value: Callable) -> list[tuple[str, float]]:
            return [(s.session_id, float(value(s))) for s in sessions]

        def capture(field: str) -> list[tuple[str, float]]:
            return [(s.session_id, float(getattr(s.pipeline.source.stats, field)))
                    for s in sessions if hasattr(s.pipeline.source, "stats")]

        yield _family(GaugeMetricFamily, "appliance_realtime_factor",
                      "Decode wall time per second of audio, recent average (>1: falling behind).",
                      rows(lambda s: s.pipeline.realtime_factor))
        # Two stages, because audio waits in the source's queue while a decode runs (the
        # pipeline takes it in between decodes): the buffer alone reads ~0 when a room is behind.
        backlog = GaugeMetricFamily("appliance_backlog_seconds",
                                    "Audio captured or pushed but not yet decoded, by where it waits: "
                                    "stage=source (queued before the pipeline), stage=buffer (in the ASR "
                                    "buffer). Their sum is how far the room's decoding trails its audio.",
                                    labels=["session", "stage"])
        for s in sessions:
            backlog.add_metric([s.session_id, "source"], s.pipeline.queued_seconds)
            backlog.add_metric([s.session_id, "buffer"], s.pipeline.asr.backlog_seconds)
        yield backlog
        yield _family(CounterMetricFamily, "appliance_merged_updates",
                      "Decode steps folded into a later one because compute fell behind.",
                      rows(lambda s: s.pipeline.asr.stats.merged_updates))
        yield _family(CounterMetricFamily, "appliance_asr_stalls",
                      "Times the recogniser stopped hearing a room's buffer past its final words while "
                      "speech went on (an early end-of-text) and the buffer was started again after them.",
                      rows(lambda s: s.pipeline.asr.stats.stalls))
        yield _family(CounterMetricFamily, "appliance_frames_dropped",
                      "Audio frames lost before decoding (capture queue full, or buffer overrun).",
                      [(sid, v + dict(capture("dropped_blocks")).get(sid, 0))
                       for sid, v in rows(lambda s: s.pipeline.asr.stats.dropped_samples // 320)])
        yield _family(CounterMetricFamily, "appliance_capture_overflows",
                      "Input overflows reported by the sound card.", capture("overflows"))
        yield _family(CounterMetricFamily, "appliance_device_reconnects",
                      "Attempts to reopen a capture device that failed.", capture("reconnects"))
        yield _family(GaugeMetricFamily, "appliance_input_level_dbfs",
                      "Level of the latest audio received (dBFS).", rows(lambda s: s.pipeline.level_dbfs))
        loads = [(s.session_id, s.pipeline.asr.load) for s in sessions if s.pipeline.asr.load is not None]
        yield _family(GaugeMetricFamily, "appliance_asr_degradation_level",
                      "What the overload policy took from the room: 0 none, 1 greedy tentative decodes, "
                      "2 and a doubled step, 3 and no partials.", [(sid, float(load.level)) for sid, load in loads])
        yield _family(CounterMetricFamily, "appliance_asr_degradations",
                      "Times the overload policy moved the room to a cheaper level.",
                      [(sid, float(load.degradations)) for sid, load in loads])
        yield _family(GaugeMetricFamily, "appliance_asr_decode_lag_seconds",
                      "Recent delay of the room's decodes in the shared decode scheduler (request to result).",
                      [(sid, load.lag_seconds) for sid, load in loads])
        yield _family(GaugeMetricFamily, "appliance_source_up",
                      "1 while the session's audio source delivers, else 0.",
                      rows(lambda s: s.state == SessionState.RUNNING))
        yield _family(GaugeMetricFamily, "appliance_subscribers", "Subscribers connected.",
                      rows(lambda s: len(s.fanout.subscribers)))
