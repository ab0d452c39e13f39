from disco.engine import EventLoop, RandomStreams


def test_events_run_in_time_then_schedule_order():
    loop = EventLoop()
    seen = []
    loop.schedule(2.0, seen.append, "c")
    loop.schedule(1.0, seen.append, "a")
    loop.schedule(1.0, seen.append, "b")
    loop.run(until=10.0)
    assert seen == ["a", "b", "c"]
    assert loop.events == 3


def test_cancelled_event_never_runs():
    loop = EventLoop()
    seen = []
    handle = loop.schedule(1.0, seen.append, "x")
    loop.schedule(2.0, seen.append, "y")
    loop.cancel(handle)
    loop.run(until=5.0)
    assert seen == ["y"]


def test_run_stops_at_until_and_keeps_later_events():
    loop = EventLoop()
    seen = []
    loop.schedule(1.0, seen.append, 1)
    loop.schedule(7.0, seen.append, 7)
    loop.run(until=5.0)
    assert seen == [1] and loop.now == 5.0
    loop.run(until=10.0)
    assert seen == [1, 7]


def test_stop_ends_the_run_after_the_current_event():
    loop = EventLoop()
    seen = []
    loop.schedule(1.0, lambda: (seen.append(1), loop.stop()))
    loop.schedule(2.0, seen.append, 2)
    loop.run(until=5.0)
    assert seen == [1] and loop.now == 1.0


def test_scheduling_into_the_past_is_an_error():
    loop = EventLoop()
    loop.schedule(1.0, lambda: None)
    loop.run(until=2.0)
    try:
        loop.at(1.0, lambda: None)
    except ValueError as e:
        assert "past" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_named_streams_do_not_shift_each_other():
    a = RandomStreams(7)
    first = a.get("workload").random(3).tolist()
    b = RandomStreams(7)
    b.get("faults").random(100)  # a new stream drawn first must not change "workload"
    assert b.get("workload").random(3).tolist() == first
    assert RandomStreams(8).get("workload").random(3).tolist() != first


def test_a_stopped_run_resumes_with_the_remaining_events():
    loop = EventLoop()
    seen = []
    loop.schedule(1.0, lambda: (seen.append(1), loop.stop()))
    loop.schedule(2.0, seen.append, 2)
    loop.schedule(9.0, seen.append, 9)
    loop.run(until=5.0)
    assert seen == [1] and loop.now == 1.0 and loop.events == 1
    loop.run(until=5.0)
    assert seen == [1, 2] and loop.now == 5.0
    loop.run(until=10.0)
    assert seen == [1, 2, 9] and loop.events == 3
