"""`/metrics` scraped while streaming clients are active, read with the
Prometheus client library's own text-format parser."""

import asyncio
import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from conftest import WAIT, Recorder, publish_all


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def scrape(port: int):
    """The samples of /metrics as {(name, sorted labels): value}, plus the
    content type and the families' types."""

    def get():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as r:
            return r.headers.get("Content-Type"), r.read().decode("utf-8")

    content_type, text = await asyncio.to_thread(get)
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return content_type, samples, types


async def test_metrics_parse_and_follow_the_traffic(start_server, clients):
    http = _free_port()
    server = await start_server("-m", str(http), "-cid", "metrics-cluster")
    publisher = await clients.connect(server, "m-pub")
    reader = await clients.connect(server, "m-reader")
    holder = await clients.connect(server, "m-holder")

    plain = Recorder("plain")
    await reader.subscribe("mon.a", cb=plain.cb, deliver_all_available=True)
    durable = Recorder("durable")
    await reader.subscribe("mon.b", durable_name="dur", cb=durable.cb, deliver_all_available=True)
    queue = Recorder("queue")
    await reader.subscribe("mon.b", queue="workers", cb=queue.cb, deliver_all_available=True)
    # Never acknowledges: its messages stay pending.
    held = Recorder("held")
    await holder.subscribe(
        "mon.a", cb=held.cb, manual_acks=True, max_inflight=3, deliver_all_available=True
    )

    await publish_all(publisher, "mon.a", [f"a{i}" for i in range(25)])
    await publish_all(publisher, "mon.b", [b"x" * 100 for _ in range(5)])
    await plain.count(25)
    await durable.count(5)
    await queue.count(5)
    await held.count(3)

    content_type, samples, types = await scrape(http)
    assert content_type.startswith("text/plain")
    assert content_type.find("version=0.0.4") >= 0

    def value(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        assert key in samples, f"{key} not in {sorted(samples)}"
        return samples[key]

    assert types["stan_clients"] == "gauge"
    assert types["stan_in_msgs"] == "counter"  # the parser drops `_total`
    assert value("stan_clients") == 3
    assert value("stan_channels") == 2
    assert value("stan_subscriptions") == 4
    assert value("stan_in_msgs_total") == 30
    assert value("stan_out_msgs_total") == 25 + 3 + 5 + 5
    assert value("stan_channel_msgs", channel="mon.a") == 25
    assert value("stan_channel_msgs", channel="mon.b") == 5
    assert value("stan_channel_subscriptions", channel="mon.a") == 2
    assert value("stan_channel_subscriptions", channel="mon.b") == 2
    assert value("stan_channel_pending", channel="mon.a") == 3
    assert value("stan_channel_pending", channel="mon.b") == 0
    assert value("stan_channel_bytes", channel="mon.b") > 500
    assert value("stan_connections") >= 3
    assert value("stan_info", cluster_id="metrics-cluster", server_id=samples_server_id(samples), version="0.25.6") == 1

    # The counters move with the traffic and the gauges follow a close.
    await publish_all(publisher, "mon.a", ["late"])
    await plain.count(26)
    await holder.close()
    _, after, _ = await scrape(http)
    assert after[("stan_in_msgs_total", ())] == 31
    assert after[("stan_clients", ())] == 2
    assert after[("stan_channel_subscriptions", (("channel", "mon.a"),))] == 1
    assert after[("stan_channel_pending", (("channel", "mon.a"),))] == 0


def samples_server_id(samples):
    for name, labels in samples:
        if name == "stan_info":
            return dict(labels)["server_id"]
    raise AssertionError("no stan_info sample")
