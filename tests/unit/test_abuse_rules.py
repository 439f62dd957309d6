"""The pure rules behind the daemon's defences: session ids, subscriber backlog bounds, the auth
lockout, log throttling, peer parsing, one plaintext rule for both listening faces."""
import asyncio

import pytest

from appliance.config import ConfigError, MetricsConfig, ServerConfig, SessionConfig, session_id_problem
from appliance.delivery.fanout import Backlog, SlowSubscriber, Subscriber
from appliance.logs import Throttle
from appliance.service.auth import Lockout, peer_host
from appliance.service.peers import parse_peer
from appliance.subtitles.events import EventKind, SubtitleEvent


@pytest.mark.parametrize("good", ["a", "room-1", "Salle_B", "x" * 64])
def test_good_session_ids(good):
    assert session_id_problem(good) is None
    SessionConfig(id=good)


@pytest.mark.parametrize("bad", ["", "x" * 65, "a b", "a\x00b", "a\nb", "../etc", "salle-é", "٣"])
def test_bad_session_ids_are_refused_with_a_bounded_message(bad):
    problem = session_id_problem(bad)
    assert problem and len(problem) < 150
    with pytest.raises(ConfigError, match="sessions.id"):
        SessionConfig(id=bad)


def test_the_message_quotes_at_most_64_characters_of_a_huge_id():
    assert len(session_id_problem("y" * 100_000)) < 150


def test_plaintext_off_loopback_is_refused_for_metrics_as_for_the_server():
    for cls, key in ((ServerConfig, "server.listen"), (MetricsConfig, "metrics.listen")):
        with pytest.raises(ConfigError, match=key):
            cls(listen="0.0.0.0:9000")
        cls(listen="0.0.0.0:9000", allow_insecure_remote=True)
        cls(listen="127.0.0.1:9000")


def final(cue: str, text: str = "x") -> SubtitleEvent:
    return SubtitleEvent(EventKind.FINAL, cue_id=cue, lines=(text,))


def test_a_subscriber_is_ended_when_its_oldest_untaken_event_is_too_old():
    now = [0.0]
    subscriber = Subscriber(False, Backlog(events=100, seconds=5.0), clock=lambda: now[0])
    subscriber.offer(final("a"))
    now[0] = 4.0
    assert not subscriber.expire(now[0])
    now[0] = 5.5
    assert subscriber.expire(now[0]) and isinstance(subscriber.failure, SlowSubscriber)


def test_a_write_in_progress_ages_too_even_with_nothing_queued():
    subscriber = Subscriber(False, Backlog(seconds=2.0))
    subscriber.writing_since = 10.0
    assert subscriber.lag(11.0) == 1.0 and not subscriber.expire(11.0)
    assert subscriber.expire(12.5)


def test_a_subscriber_that_takes_its_events_never_ages():
    async def scenario():
        now = [0.0]
        subscriber = Subscriber(False, Backlog(seconds=1.0), clock=lambda: now[0])
        for step in range(10):
            now[0] = step * 0.9
            subscriber.offer(final(str(step)))
            await subscriber.next()
        return subscriber.failure
    assert asyncio.run(scenario()) is None


def test_a_subscriber_is_ended_past_its_byte_bound():
    subscriber = Subscriber(False, Backlog(events=100, bytes=1000), size=lambda event: len(event.text))
    subscriber.offer(final("a", "x" * 600))
    assert subscriber.failure is None and subscriber.queued_bytes == 600
    subscriber.offer(final("b", "x" * 600))
    assert isinstance(subscriber.failure, SlowSubscriber) and "bytes" in str(subscriber.failure)


def test_lockout_after_max_failures_then_forgiven_and_doubling_while_it_persists():
    now = [0.0]
    lockout = Lockout(max_failures=3, seconds=10.0, clock=lambda: now[0])
    assert [lockout.failed("1.2.3.4") for _ in range(3)] == ["first", "again", "locked"]
    assert lockout.remaining("1.2.3.4") == 10.0 and lockout.remaining("5.6.7.8") == 0
    now[0] = 10.5
    assert lockout.remaining("1.2.3.4") == 0
    assert [lockout.failed("1.2.3.4") for _ in range(3)] == ["first", "again", "locked"]
    assert lockout.remaining("1.2.3.4") == 20.0  # the second lockout doubles


def test_lockout_is_per_client_whichever_face_saw_it():
    lockout = Lockout(max_failures=2, seconds=10.0)
    lockout.failed("::ffff:10.0.0.5")  # an IPv4 client of a dual-stack listener (one face)
    assert lockout.failed("10.0.0.5") == "locked"  # the same client seen by another
    assert lockout.remaining("::ffff:10.0.0.5") > 0 and lockout.remaining("10.0.0.6") == 0


def test_lockout_memory_is_bounded():
    lockout = Lockout(max_failures=3, seconds=10.0, max_addresses=100)
    for i in range(1000):
        lockout.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(lockout._records) == 100


def test_throttle_lets_one_line_per_key_per_interval_and_counts_the_rest():
    now = [0.0]
    throttle = Throttle(interval=10.0, clock=lambda: now[0])
    assert [throttle("List") for _ in range(4)] == [0, None, None, None]
    assert throttle("Get") == 0
    now[0] = 10.0
    assert throttle("List") == 3


def test_peer_strings():
    assert parse_peer("ipv4:127.0.0.1:5123") == ("127.0.0.1", 5123)
    assert parse_peer("ipv6:[::1]:5123") == ("::1", 5123)
    assert parse_peer("unix:/run/x.sock") is None
    assert peer_host("ipv4:10.0.0.5:5123") == "10.0.0.5" and peer_host("ipv6:[::1]:9") == "::1"
