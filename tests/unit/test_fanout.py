"""The event log's creation times and the fan-out's per-subscriber queues (no gRPC)."""
import asyncio

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance.delivery.eventlog import EventLog
from appliance.delivery.fanout import Fanout, Subscriber
from appliance.service.convert import EncodedEvents, event_to_pb
from appliance.subtitles.events import EventKind, SubtitleEvent


def test_created_is_the_clock_at_publication_and_never_goes_back():
    times = iter([100.0, 101.5, 99.0, 102.0])  # the wall clock steps back once (NTP)
    log = EventLog("room", clock=lambda: next(times))
    created = [log.publish(SubtitleEvent(EventKind.FINAL)).created for _ in range(4)]
    assert created == [100.0, 101.5, 101.5, 102.0]
    assert [e.created for e in log.since(0)] == created  # replay keeps the original times


def test_a_subscriber_joining_an_ended_session_gets_the_backlog_then_ends():
    async def scenario():
        log, fanout = EventLog("room"), Fanout()
        for kind in (EventKind.PARTIAL, EventKind.PARTIAL, EventKind.FINAL):
            fanout.publish(log.publish(SubtitleEvent(kind)))
        fanout.close()
        late = Subscriber(include_partials=True, max_backlog=8)
        fanout.add(late)
        return [e.seq for e in log.since(0)], await asyncio.wait_for(late.next(), 1)

    retained, live = asyncio.run(scenario())
    assert retained == [2, 3] and live is None  # the latest PARTIAL and the FINAL


def test_partials_published_together_reach_a_subscriber_as_the_latest_one():
    async def scenario():
        log, fanout = EventLog("room"), Fanout()
        subscriber = Subscriber(include_partials=True, max_backlog=8)
        fanout.add(subscriber)
        for kind in (EventKind.PARTIAL, EventKind.FINAL, EventKind.PARTIAL, EventKind.PARTIAL):
            fanout.publish(log.publish(SubtitleEvent(kind)))
        fanout.close()
        return [e.seq async for e in _drain(subscriber)], subscriber.coalesced

    seqs, coalesced = asyncio.run(scenario())
    assert seqs == [2, 4] and coalesced == 2  # the FINAL is never dropped


def test_partials_of_two_cues_in_one_update_both_reach_a_subscriber():
    """A cue fills up and the next begins in one update: the first cue's words are not held back
    until its FINAL; a FINAL makes its own cue's pending PARTIAL redundant."""
    async def scenario():
        log, fanout = EventLog("room"), Fanout()
        subscriber = Subscriber(include_partials=True, max_backlog=8)
        fanout.add(subscriber)

        def update(*events):
            for kind, cue in events:
                fanout.publish(log.publish(SubtitleEvent(kind, cue_id=cue)))

        update((EventKind.PARTIAL, "a"), (EventKind.PARTIAL, "b"))
        first = [await subscriber.next(), await subscriber.next()]
        update((EventKind.PARTIAL, "a"), (EventKind.PARTIAL, "b"), (EventKind.FINAL, "a"), (EventKind.PARTIAL, "b"))
        fanout.close()
        rest = [e async for e in _drain(subscriber)]
        return [(e.seq, e.cue_id) for e in first + rest], subscriber.coalesced

    events, coalesced = asyncio.run(scenario())
    assert events == [(1, "a"), (2, "b"), (5, "a"), (6, "b")] and coalesced == 2


async def _drain(subscriber):
    while (event := await subscriber.next()) is not None:
        yield event


def test_an_event_is_encoded_once_for_all_its_subscribers():
    log, encoded = EventLog("room"), EncodedEvents(size=2)
    first, second, third = (log.publish(SubtitleEvent(EventKind.FINAL, lines=(text,))) for text in "abc")
    data = encoded(first)
    assert encoded(first) is data  # the second subscriber gets the same bytes, not a new encoding
    assert pb.SubtitleEvent.FromString(data) == event_to_pb(first)
    encoded(second), encoded(third)  # `first` falls out of the cache: encoded anew, equal
    assert encoded(first) is not data and encoded(first) == data


def test_a_waiting_subscriber_is_woken_by_an_event_by_close_and_by_failure():
    async def scenario():
        log = EventLog("room")
        subscriber = Subscriber(include_partials=True, max_backlog=8)
        waiting = asyncio.create_task(subscriber.next())
        await asyncio.sleep(0)  # it waits: nothing is queued
        subscriber.offer(log.publish(SubtitleEvent(EventKind.FINAL)))
        woken_by_event = (await asyncio.wait_for(waiting, 1)).seq
        cancelled = asyncio.create_task(subscriber.next())  # a call cancelled while it waits
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        subscriber.offer(log.publish(SubtitleEvent(EventKind.FINAL)))  # wakes no one, stays queued
        queued = (await asyncio.wait_for(subscriber.next(), 1)).seq
        closing = asyncio.create_task(subscriber.next())
        await asyncio.sleep(0)
        subscriber.close()
        woken_by_close = await asyncio.wait_for(closing, 1)
        failing = Subscriber(include_partials=True, max_backlog=8)
        waiting = asyncio.create_task(failing.next())
        await asyncio.sleep(0)
        failing.fail(RuntimeError("its push failed"))
        try:
            await asyncio.wait_for(waiting, 1)
            woken_by_failure = None
        except RuntimeError as exc:
            woken_by_failure = str(exc)
        return woken_by_event, queued, woken_by_close, woken_by_failure

    assert asyncio.run(scenario()) == (1, 2, None, "its push failed")
