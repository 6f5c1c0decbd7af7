//! The oracle on hand-written journals: each rule fires on the run that breaks it and
//! stays quiet on the run that keeps it.

use std::time::Duration;

use stan_core::client::StartAt;

use super::check;
use crate::journal::{Entry, Ev, Inc, Silence, SubKind, Unregister};
use crate::plan::{Limits, Plan};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn plan() -> Plan {
    Plan {
        scenario: "test",
        seed: 0,
        store: Default::default(),
        limits: Limits::default(),
        actors: Vec::new(),
        faults: Vec::new(),
        workload_end: ms(10_000),
        end: ms(20_000),
        options: Default::default(),
    }
}

const A: Inc = Inc { actor: 1, n: 1 };
const B: Inc = Inc { actor: 2, n: 1 };

fn at(t: u64, ev: Ev) -> Entry {
    Entry { at: ms(t), ev }
}

/// Client `a` connects as `id` at 0 and stays registered unless told otherwise.
fn connected(inc: Inc, id: &str, t: u64) -> Vec<Entry> {
    vec![
        at(
            t,
            Ev::Connecting {
                inc,
                client_id: id.into(),
            },
        ),
        at(
            t + 10,
            Ev::Registered {
                client_id: id.into(),
            },
        ),
        at(t + 12, Ev::Connected { inc }),
    ]
}

fn final_list(ids: &[&str]) -> Entry {
    at(
        19_950,
        Ev::ServerFinal {
            client_ids: ids.iter().map(|s| s.to_string()).collect(),
        },
    )
}

fn run(mut entries: Vec<Entry>) -> Vec<String> {
    entries.sort_by_key(|e| e.at);
    check(&plan(), &entries)
}

fn unregistered(t: u64, id: &str, reason: Unregister) -> Entry {
    at(
        t,
        Ev::Unregistered {
            client_id: id.into(),
            reason,
        },
    )
}

#[test]
fn a_quiet_run_passes() {
    let mut j = connected(A, "a", 0);
    j.push(final_list(&["a"]));
    assert_eq!(run(j), Vec::<String>::new());
}

#[test]
fn a_frozen_client_must_be_closed_in_time() {
    let mut j = connected(A, "a", 0);
    j.push(at(
        1000,
        Ev::SilenceStart {
            actor: 1,
            cause: Silence::Freeze,
        },
    ));
    let mut late = j.clone();
    late.push(final_list(&["a"]));
    let v = run(late);
    assert!(
        v.iter().any(|v| v.contains("was not closed within")),
        "{v:?}"
    );

    let mut on_time = j.clone();
    on_time.push(unregistered(4600, "a", Unregister::HeartbeatTimeout));
    on_time.push(final_list(&[]));
    assert_eq!(run(on_time), Vec::<String>::new());

    let mut too_soon = j;
    too_soon.push(unregistered(2500, "a", Unregister::HeartbeatTimeout));
    too_soon.push(final_list(&[]));
    let v = run(too_soon);
    assert!(v.iter().any(|v| v.contains("without cause")), "{v:?}");
}

#[test]
fn a_client_that_answers_keeps_its_registration() {
    let mut j = connected(A, "a", 0);
    // A blip well under the bound, then answers again.
    j.push(at(
        1000,
        Ev::SilenceStart {
            actor: 1,
            cause: Silence::Hold,
        },
    ));
    j.push(at(
        2000,
        Ev::SilenceEnd {
            actor: 1,
            cause: Silence::Hold,
        },
    ));
    j.push(unregistered(6000, "a", Unregister::HeartbeatTimeout));
    j.push(final_list(&[]));
    let v = run(j);
    assert!(v.iter().any(|v| v.contains("without cause")), "{v:?}");
}

#[test]
fn the_log_and_the_servers_list_must_agree() {
    let mut j = connected(A, "a", 0);
    j.push(final_list(&[]));
    let v = run(j);
    assert!(v.iter().any(|v| v.contains("but its log says")), "{v:?}");
}

#[test]
fn a_duplicate_id_is_refused_while_the_holder_answers() {
    let mut j = connected(A, "a", 0);
    j.push(at(
        3000,
        Ev::Connecting {
            inc: B,
            client_id: "a".into(),
        },
    ));
    let mut accepted = j.clone();
    accepted.push(unregistered(3010, "a", Unregister::Replaced));
    accepted.push(at(
        3010,
        Ev::Registered {
            client_id: "a".into(),
        },
    ));
    accepted.push(at(3012, Ev::Connected { inc: B }));
    accepted.push(final_list(&["a"]));
    let v = run(accepted);
    assert!(
        v.iter()
            .any(|v| v.contains("while c1#1 holds that ID and answers")),
        "{v:?}"
    );
    assert!(v.iter().any(|v| v.contains("without cause")), "{v:?}");

    let mut refused = j;
    refused.push(at(
        3020,
        Ev::ConnectFailed {
            inc: B,
            error: "stan: clientID already registered".into(),
        },
    ));
    refused.push(final_list(&["a"]));
    assert_eq!(run(refused), Vec::<String>::new());
}

#[test]
fn a_duplicate_id_takes_over_from_a_silent_holder() {
    let mut j = connected(A, "a", 0);
    j.push(at(1000, Ev::Dropped { inc: A }));
    j.push(at(
        1500,
        Ev::Connecting {
            inc: B,
            client_id: "a".into(),
        },
    ));
    let mut refused = j.clone();
    refused.push(at(
        1520,
        Ev::ConnectFailed {
            inc: B,
            error: "stan: clientID already registered".into(),
        },
    ));
    refused.push(unregistered(3500, "a", Unregister::HeartbeatTimeout));
    refused.push(final_list(&[]));
    let v = run(refused);
    assert!(v.iter().any(|v| v.contains("could not take over")), "{v:?}");

    let mut accepted = j;
    accepted.push(unregistered(1510, "a", Unregister::Replaced));
    accepted.push(at(
        1510,
        Ev::Registered {
            client_id: "a".into(),
        },
    ));
    accepted.push(at(1512, Ev::Connected { inc: B }));
    accepted.push(final_list(&["a"]));
    assert_eq!(run(accepted), Vec::<String>::new());
}

fn subscribed(inc: Inc, sub: u32, kind: SubKind, mif: i32, manual: bool, t: u64) -> Vec<Entry> {
    vec![
        at(
            t,
            Ev::SubRequested {
                inc,
                sub,
                channel: "ch".into(),
                kind,
                start: StartAt::NewOnly,
                max_in_flight: mif,
                manual,
            },
        ),
        at(t + 5, Ev::Subscribed { inc, sub }),
    ]
}

fn publish(t: u64, payload: &str) -> Vec<Entry> {
    vec![
        at(
            t,
            Ev::Published {
                inc: B,
                channel: "ch".into(),
                payload: payload.into(),
            },
        ),
        at(
            t + 5,
            Ev::PubAck {
                inc: B,
                payload: payload.into(),
                error: None,
            },
        ),
    ]
}

fn msg(t: u64, inc: Inc, seq: u64, redelivered: bool, payload: &str) -> Entry {
    let count = u32::from(redelivered);
    at(
        t,
        Ev::Msg {
            inc,
            sub: 1,
            seq,
            redelivered,
            count,
            payload: payload.into(),
            timestamp: 0,
        },
    )
}

/// A subscriber `A` and a publisher `B`, both registered throughout.
fn delivery_run(manual: bool, mif: i32, tail: Vec<Entry>) -> Vec<String> {
    let mut j = connected(A, "a", 0);
    j.extend(connected(B, "b", 0));
    j.extend(subscribed(A, 1, SubKind::Plain, mif, manual, 100));
    j.extend(publish(1000, "p1"));
    j.extend(publish(1100, "p2"));
    j.extend(tail);
    j.push(final_list(&["a", "b"]));
    run(j)
}

#[test]
fn every_acknowledged_publish_reaches_the_subscriber() {
    let ok = delivery_run(
        false,
        10,
        vec![msg(1010, A, 1, false, "p1"), msg(1110, A, 2, false, "p2")],
    );
    assert_eq!(ok, Vec::<String>::new());
    let v = delivery_run(false, 10, vec![msg(1010, A, 1, false, "p1")]);
    assert!(
        v.iter()
            .any(|v| v.contains("never received 1 message(s)") && v.contains("p2")),
        "{v:?}"
    );
}

#[test]
fn manual_subscribers_must_end_up_acknowledging() {
    let ack = |t, seq| {
        at(
            t,
            Ev::Ack {
                inc: A,
                sub: 1,
                seq,
            },
        )
    };
    let ok = delivery_run(
        true,
        10,
        vec![
            msg(1010, A, 1, false, "p1"),
            msg(1110, A, 2, false, "p2"),
            msg(2110, A, 2, true, "p2"),
            ack(1020, 1),
            ack(2120, 2),
        ],
    );
    assert_eq!(ok, Vec::<String>::new());
    let v = delivery_run(
        true,
        10,
        vec![
            msg(1010, A, 1, false, "p1"),
            msg(1110, A, 2, false, "p2"),
            ack(1020, 1),
        ],
    );
    assert!(v.iter().any(|v| v.contains("never acknowledged")), "{v:?}");
}

#[test]
fn max_in_flight_counts_unacknowledged_deliveries() {
    let v = delivery_run(
        true,
        1,
        vec![msg(1010, A, 1, false, "p1"), msg(1110, A, 2, false, "p2")],
    );
    assert!(
        v.iter().any(|v| v.contains("more than MaxInFlight 1")),
        "{v:?}"
    );
}

#[test]
fn the_redelivered_flag_marks_exactly_the_redeliveries() {
    let v = delivery_run(
        false,
        10,
        vec![
            msg(1010, A, 1, false, "p1"),
            msg(1110, A, 2, false, "p2"),
            msg(1200, A, 2, false, "p2"),
        ],
    );
    assert!(
        v.iter()
            .any(|v| v.contains("again without the redelivered flag")),
        "{v:?}"
    );
    let v = delivery_run(
        false,
        10,
        vec![msg(1010, A, 1, false, "p1"), msg(1110, A, 2, true, "p2")],
    );
    assert!(
        v.iter().any(|v| v.contains("never delivered before")),
        "{v:?}"
    );
}

#[test]
fn first_deliveries_come_in_order_and_match_the_store() {
    let v = delivery_run(
        false,
        10,
        vec![msg(1110, A, 2, false, "p2"), msg(1120, A, 1, false, "p1")],
    );
    assert!(v.iter().any(|v| v.contains("out of order")), "{v:?}");
    let v = delivery_run(
        false,
        10,
        vec![msg(1010, A, 1, false, "p1"), msg(1110, A, 2, false, "p1")],
    );
    assert!(v.iter().any(|v| v.contains("stored twice")), "{v:?}");
    let v = delivery_run(
        false,
        10,
        vec![
            msg(1010, A, 1, false, "p1"),
            msg(1110, A, 2, false, "p2"),
            msg(1120, A, 3, false, "ghost"),
        ],
    );
    assert!(v.iter().any(|v| v.contains("nobody published")), "{v:?}");
}

#[test]
fn a_queue_group_first_delivers_each_message_once() {
    const C: Inc = Inc { actor: 3, n: 1 };
    let q = SubKind::Queue("g".into());
    let mut j = connected(A, "a", 0);
    j.extend(connected(B, "b", 0));
    j.extend(connected(C, "c", 0));
    j.extend(subscribed(A, 1, q.clone(), 10, false, 100));
    j.extend(subscribed(C, 1, q, 10, false, 200));
    j.extend(publish(1000, "p1"));
    j.push(msg(1010, A, 1, false, "p1"));
    let mut twice = j.clone();
    twice.push(msg(1010, C, 1, false, "p1"));
    twice.push(final_list(&["a", "b", "c"]));
    let v = run(twice);
    assert!(
        v.iter().any(|v| v.contains("first-delivered to both")),
        "{v:?}"
    );
    j.push(final_list(&["a", "b", "c"]));
    assert_eq!(run(j), Vec::<String>::new());
}

#[test]
fn panics_are_violations() {
    let mut j = connected(A, "a", 0);
    j.push(final_list(&["a"]));
    j.push(at(
        20_000,
        Ev::Panic {
            message: "boom".into(),
        },
    ));
    let v = run(j);
    assert!(v.iter().any(|v| v.contains("panic: boom")), "{v:?}");
}

#[test]
fn an_acknowledged_message_is_not_redelivered() {
    let ack = |t, seq| {
        at(
            t,
            Ev::Ack {
                inc: A,
                sub: 1,
                seq,
            },
        )
    };
    let base = vec![
        msg(1010, A, 1, false, "p1"),
        ack(1020, 1),
        msg(1110, A, 2, false, "p2"),
        ack(1120, 2),
    ];
    let mut late = base.clone();
    late.push(msg(2200, A, 1, true, "p1"));
    let v = delivery_run(true, 10, late);
    assert!(
        v.iter()
            .any(|v| v.contains("again although it acknowledged it")),
        "{v:?}"
    );
    // A redelivery already on its way when the ack left is no fault.
    let mut crossing = base;
    crossing.push(msg(1030, A, 1, true, "p1"));
    assert_eq!(delivery_run(true, 10, crossing), Vec::<String>::new());
}

#[test]
fn a_lineage_still_draining_at_the_end_is_not_judged_complete() {
    // p2 missing, but the subscription was still receiving (p1 redelivered) shortly
    // before the end: no claim.
    let v = delivery_run(
        false,
        10,
        vec![msg(1010, A, 1, false, "p1"), msg(18_000, A, 1, true, "p1")],
    );
    assert!(!v.iter().any(|v| v.contains("never received")), "{v:?}");
}

#[test]
fn a_subscription_left_unfed_is_caught_even_if_something_wakes_it_later() {
    // p2 arrives in the end, but only five seconds after the workload ended.
    let v = delivery_run(
        false,
        10,
        vec![msg(1010, A, 1, false, "p1"), msg(15_000, A, 2, false, "p2")],
    );
    assert!(
        v.iter()
            .any(|v| v.contains("received nothing from 10.000s to 15.000s")),
        "{v:?}"
    );
    // Fed promptly: nothing to say.
    let ok = delivery_run(
        false,
        10,
        vec![msg(1010, A, 1, false, "p1"), msg(10_500, A, 2, false, "p2")],
    );
    assert_eq!(ok, Vec::<String>::new());
}
