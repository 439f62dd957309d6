"""The overload policy with plain numbers: who is degraded, when, and how they recover."""
import pytest

from appliance.asr.overload import Degradation, OverloadConfig, OverloadPolicy, RoomLoad

CONFIG = OverloadConfig(lag_high=1.0, lag_low=0.6, busy_low=0.75, hold=3.0, window=5.0, smoothing=1.0)


def policy(*rooms: str) -> OverloadPolicy:
    p = OverloadPolicy(CONFIG)
    for room in rooms:
        p.join(room)
    return p


def lags(p: OverloadPolicy, **by_room: float) -> None:
    for room, lag in by_room.items():
        p.observe(room, lag)


def test_within_capacity_nothing_changes():
    p = policy("a", "b")
    lags(p, a=0.4, b=0.5)
    p.busy(0.0, 4.0)
    assert p.decide(5.0) is None
    assert all(r.level == Degradation.NONE for r in p.rooms.values())


def test_a_lagging_box_degrades_the_newest_room_first_one_level_at_a_time():
    p = policy("old", "mid", "new")
    lags(p, old=1.4, mid=1.2, new=1.3)
    assert p.decide(10.0) == ("new", Degradation.GREEDY)
    assert p.decide(11.0) is None  # held: the change needs a few decodes to show
    assert p.decide(13.0) == ("new", Degradation.LONG_STEP)
    assert p.decide(16.0) == ("new", Degradation.NO_PARTIALS)
    assert p.decide(19.0) == ("mid", Degradation.GREEDY)  # the newest is as cheap as it gets
    assert p.rooms["old"].level == Degradation.NONE
    assert p.rooms["new"].degradations == 3


def test_every_room_at_the_floor_leaves_nothing_to_change():
    p = OverloadPolicy(OverloadConfig(max_level=Degradation.GREEDY, smoothing=1.0, hold=0.0))
    p.join("a")
    p.observe("a", 2.0)
    assert p.decide(1.0) == ("a", Degradation.GREEDY)
    assert p.decide(2.0) is None


def test_recovery_needs_low_lags_and_decoder_headroom_and_goes_oldest_first():
    p = policy("old", "new")
    p.rooms["old"].level = Degradation.GREEDY
    p.rooms["new"].level = Degradation.LONG_STEP
    lags(p, old=0.3, new=0.3)
    p.busy(0.0, 4.5)  # 90 % busy over the last 5 s: no headroom yet
    assert p.decide(5.0) is None
    assert p.utilization(5.0) == pytest.approx(0.9)
    assert p.utilization(20.0) == 0.0  # the busy spell has left the window
    assert p.decide(20.0) == ("old", Degradation.NONE)
    assert p.decide(23.0) == ("new", Degradation.GREEDY)
    assert p.rooms["new"].degradations == 0  # recoveries are not degradations


def test_a_lag_between_the_thresholds_holds_the_level():
    p = policy("a")
    p.rooms["a"].level = Degradation.GREEDY
    lags(p, a=0.8)
    assert p.decide(10.0) is None
    assert p.rooms["a"].level == Degradation.GREEDY


def test_lag_is_a_moving_average_and_counts_batched_decodes():
    p = OverloadPolicy(OverloadConfig(smoothing=0.5))
    p.observe("a", 2.0, batch_size=3)
    p.observe("a", 0.0, batch_size=1)
    room = p.rooms["a"]
    assert room.lag_seconds == pytest.approx(1.0)
    assert (room.decodes, room.batched_decodes) == (2, 1)


def test_utilization_counts_concurrent_batches_against_their_number():
    p = OverloadPolicy(CONFIG, concurrency=2)
    p.busy(0.0, 5.0)
    p.busy(0.0, 2.5)
    assert p.utilization(5.0) == pytest.approx(0.75)


def test_a_room_that_left_is_not_degraded():
    p = policy("a", "b")
    lags(p, a=1.5)
    p.leave("b")
    assert p.decide(10.0) == ("a", Degradation.GREEDY)


def test_room_load_says_what_each_level_means():
    assert (RoomLoad().greedy, RoomLoad().step_factor, RoomLoad().partials) == (False, 1.0, True)
    greedy = RoomLoad(level=Degradation.GREEDY)
    assert (greedy.greedy, greedy.step_factor, greedy.partials) == (True, 1.0, True)
    assert RoomLoad(level=Degradation.LONG_STEP).step_factor == 2.0
    last = RoomLoad(level=Degradation.NO_PARTIALS)
    assert (last.greedy, last.step_factor, last.partials) == (True, 3.0, False)  # finals keep coming, a step later


def test_a_seldom_decoding_room_does_not_hold_recovery_back_with_a_stale_lag():
    p = policy("a", "b")
    p.rooms["b"].level = Degradation.NO_PARTIALS
    p.observe("b", 1.8, now=1.0)  # its last decode, long ago, lagged
    p.observe("a", 0.2, now=9.5)
    assert p.decide(10.0) == ("b", Degradation.LONG_STEP)


@pytest.mark.parametrize("kwargs", [dict(lag_low=1.0, lag_high=1.0), dict(busy_low=0.0), dict(smoothing=1.5),
                                    dict(hold=-1.0), dict(window=0.0)])
def test_inconsistent_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        OverloadConfig(**kwargs)
