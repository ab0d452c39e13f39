from hypothesis import given
from hypothesis import strategies as st

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


@given(st.lists(st.tuples(st.sampled_from([0.0, 0.0, 0.5, 1.0]), st.booleans(),
                          st.booleans()), max_size=40))
def test_soon_runs_in_the_same_order_as_a_zero_delay_schedule(plan):
    """Zero-delay events, in the FIFO or the heap, interleave with timed ones exactly as the
    heap alone would order them; cancelling works in both."""
    def trace(use_soon: bool) -> list:
        loop = EventLoop()
        seen: list = []

        def fire(i: int, delay: float, cancel_next: bool) -> None:
            seen.append((loop.now, i))
            if i + 1 < len(plan):
                d, _, c = plan[i + 1]
                if d == 0.0 and use_soon:
                    handle = loop.soon(fire, i + 1, d, c)
                else:
                    handle = loop.schedule(d, fire, i + 1, d, c)
                loop.schedule(0.25, seen.append, ("timer", i))
                if cancel_next:
                    loop.cancel(handle)

        for i, (d, _, c) in enumerate(plan):
            if d == 0.0 and use_soon:
                loop.soon(fire, i, d, c)
            else:
                loop.schedule(d, fire, i, d, c)
        loop.run(until=3.0)
        return seen + [loop.events, loop.pending]

    assert trace(use_soon=True) == trace(use_soon=False)


def test_soon_events_respect_stop_and_the_end_of_the_run():
    loop = EventLoop()
    seen = []
    loop.schedule(1.0, lambda: (loop.soon(seen.append, "after stop"), loop.stop()))
    loop.run(until=5.0)
    assert seen == [] and loop.pending == 1
    loop.run(until=5.0)
    assert seen == ["after stop"]
    loop.soon(seen.append, "at the end")
    loop.run(until=5.0)  # due exactly at ``until``: runs before the end sentinel
    assert seen == ["after stop", "at the end"] and loop.now == 5.0


def test_compaction_drops_cancelled_soon_events():
    loop = EventLoop()
    seen = []
    handles = [loop.soon(seen.append, i) for i in range(200)]
    for h in handles[:150]:
        loop.cancel(h)
    assert loop.pending == 50
    loop.run(until=1.0)
    assert seen == list(range(150, 200))


@given(st.lists(st.tuples(st.sampled_from(["schedule", "soon", "at"]),
                          st.sampled_from([0.0, 0.0, 0.3, 1.0, 2.5]),
                          st.sampled_from(["", "", "cancel", "cancel_many", "stop"])),
                min_size=1, max_size=60),
       st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=1, max_size=4),
       st.booleans())
def test_events_counts_exactly_the_callbacks_run(plan, untils, stop_first):
    """``events`` is derived from queue lengths and seqs, not counted per event: it must still
    equal the callbacks run, through cancels (also of events already run), compaction, stops
    (also before ``run``) and runs resumed."""
    loop = EventLoop()
    ran = [0]
    handles: list[int] = []

    def fire(i: int) -> None:
        ran[0] += 1
        if i + 1 < len(plan):
            add(i + 1)
        action = plan[i][2]
        if action == "cancel" and handles:
            loop.cancel(handles[i * 7 % len(handles)])
        elif action == "cancel_many":  # enough to trigger compaction
            for _ in range(70):
                loop.cancel(loop.schedule(1.0, fire, i))
        elif action == "stop":
            loop.stop()

    def add(i: int) -> None:
        kind, delay, _ = plan[i]
        if kind == "soon":
            handles.append(loop.soon(fire, i))
        elif kind == "at":
            handles.append(loop.at(loop.now + delay, fire, i))
        else:
            handles.append(loop.schedule(delay, fire, i))

    add(0)
    loop.schedule(0.7, fire, len(plan) - 1)
    if stop_first:
        loop.stop()
    for until in sorted(untils):
        loop.run(until=until)
        assert loop.events == ran[0]
