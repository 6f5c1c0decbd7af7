"""Queue groups: each message goes to exactly one member of a group."""

import asyncio
from collections import Counter

from conftest import WAIT, sync


async def test_queue_group_delivers_each_message_once_and_plain_subscriber_gets_all(
    server, clients
):
    n = 300
    members = 3
    pub_nc = await clients.connect(server.url)

    received = []  # (member index, payload) in arrival order
    all_in = asyncio.Event()
    done_events = []
    queue_subs = []

    for idx in range(members):
        nc = await clients.connect(server.url)

        async def on_msg(msg, idx=idx):
            received.append((idx, msg.data))
            if len(received) >= n:
                all_in.set()

        done = asyncio.Event()
        done_events.append(done)

        async def on_done(msg, done=done):
            done.set()

        queue_subs.append(await nc.subscribe("work.items", queue="workers", cb=on_msg))
        # A plain subscription on the same connection, used as an end marker.
        await nc.subscribe("work.done", cb=on_done)
        await sync(nc)

    watch_nc = await clients.connect(server.url)
    watcher = await watch_nc.subscribe("work.items")
    await sync(watch_nc)

    for i in range(n):
        await pub_nc.publish("work.items", str(i).encode())
    await pub_nc.publish("work.done", b"")
    await sync(pub_nc)

    await asyncio.wait_for(all_in.wait(), WAIT)
    for done in done_events:
        await asyncio.wait_for(done.wait(), WAIT)

    # Each member's end marker was published after all the work items, so every
    # item the server routed to that member has been counted by now.
    assert sum(s.delivered for s in queue_subs) == n
    payloads = [p for _, p in received]
    assert len(payloads) == n
    dupes = [p for p, c in Counter(payloads).items() if c > 1]
    assert not dupes, f"delivered more than once within the group: {dupes[:10]}"
    assert sorted(payloads, key=int) == [str(i).encode() for i in range(n)]

    # The non-queue subscriber gets all of them, in order.
    got = [(await watcher.next_msg(timeout=WAIT)).data for _ in range(n)]
    assert got == [str(i).encode() for i in range(n)]

    spread = Counter(idx for idx, _ in received)
    print(f"queue group spread over members: {dict(spread)}")


async def test_two_queue_groups_each_get_every_message_once(server, clients):
    n = 100
    pub_nc = await clients.connect(server.url)
    got = {"g1": [], "g2": []}
    full = {"g1": asyncio.Event(), "g2": asyncio.Event()}
    subs = {"g1": [], "g2": []}
    done_events = []
    for group in ("g1", "g2"):
        for _ in range(2):
            nc = await clients.connect(server.url)

            async def on_msg(msg, group=group):
                got[group].append(msg.data)
                if len(got[group]) >= n:
                    full[group].set()

            done = asyncio.Event()
            done_events.append(done)

            async def on_done(msg, done=done):
                done.set()

            subs[group].append(await nc.subscribe("jobs", queue=group, cb=on_msg))
            await nc.subscribe("jobs.done", cb=on_done)
            await sync(nc)

    for i in range(n):
        await pub_nc.publish("jobs", str(i).encode())
    await pub_nc.publish("jobs.done", b"")
    await sync(pub_nc)

    for group in ("g1", "g2"):
        await asyncio.wait_for(full[group].wait(), WAIT)
    for done in done_events:
        await asyncio.wait_for(done.wait(), WAIT)

    want = [str(i).encode() for i in range(n)]
    for group in ("g1", "g2"):
        assert sum(s.delivered for s in subs[group]) == n, group
        assert sorted(got[group], key=int) == want, group


async def test_queue_subscriber_alone_gets_everything(server, clients):
    nc = await clients.connect(server.url)
    sub = await nc.subscribe("solo.q", queue="only")
    for i in range(50):
        await nc.publish("solo.q", str(i).encode())
    got = [(await sub.next_msg(timeout=WAIT)).data for _ in range(50)]
    assert got == [str(i).encode() for i in range(50)]
