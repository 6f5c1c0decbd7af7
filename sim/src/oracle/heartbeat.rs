//! Registrations against silences: a silent client is closed in time, never too early,
//! and a client that answers keeps its registration; a connect with an ID in use is
//! refused while the holder answers and accepted once it is silent.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{fmt_t, Model, Quiet};
use crate::journal::Unregister;
use crate::plan::TIMING;

pub(super) fn check(m: &mut Model<'_>) {
    closes_in_time(m);
    closes_justified(m);
    duplicate_ids(m);
    final_list_matches(m);
}

/// Every registration whose owner went silent for good (or long enough) ends within
/// the bound after the silence began.
fn closes_in_time(m: &mut Model<'_>) {
    let upper = TIMING.close_upper_bound();
    let horizon = m.horizon();
    let mut found = Vec::new();
    for r in &m.regs {
        let Some(owner) = r.owner else { continue };
        for q in m.quiet_of(owner) {
            let from = q.start.max(r.start);
            if r.end.is_some_and(|(t, _)| t <= from) {
                break;
            }
            let due = from + upper;
            if due > horizon || q.end.is_some_and(|e| e < due) {
                continue;
            }
            if r.end.is_none_or(|(t, _)| t > due) {
                let ended = r.end.map_or("still registered".to_string(), |(t, why)| {
                    format!("ended {why:?} at {}", fmt_t(t))
                });
                found.push((
                    due,
                    format!(
                        "{owner} ({}) silent since {} was not closed within {:?}: {ended}",
                        r.client_id,
                        fmt_t(from),
                        upper
                    ),
                ));
            }
            break;
        }
    }
    for (t, v) in found {
        m.violation(t, v);
    }
}

/// Every registration that ended had a reason the client gave: a close it sent, a
/// silence long enough for the heartbeat rule, or a silence during a probe.
fn closes_justified(m: &mut Model<'_>) {
    let lat = TIMING.latency_bound();
    let mut found = Vec::new();
    for r in &m.regs {
        let Some((t, why)) = r.end else { continue };
        let Some(owner) = r.owner else { continue };
        let quiet = m.quiet_of(owner);
        let ok = match why {
            Unregister::Closed => m
                .incs
                .values()
                .any(|i| i.client_id == r.client_id && i.close_sent.is_some_and(|c| c <= t)),
            Unregister::HeartbeatTimeout => quiet.iter().any(|q| {
                let lower = if q.fast {
                    TIMING.close_lower_bound_fast()
                } else {
                    TIMING.close_lower_bound_silent()
                };
                let from = q.start.max(r.start);
                from + lower <= t && q.end.is_none_or(|e| e + TIMING.hb_timeout + 2 * lat >= t)
            }),
            Unregister::ServerDown => true,
            Unregister::Replaced => quiet.iter().any(|q| {
                (q.fast && q.start <= t)
                    || q.covers(
                        (t + lat).saturating_sub(TIMING.probe_timeout),
                        t.saturating_sub(lat),
                    )
            }),
        };
        if !ok {
            let silences: Vec<String> = quiet.iter().map(describe).collect();
            found.push((
                t,
                format!(
                    "{owner} ({}) registered at {} was unregistered ({why:?}) without cause; its silences: [{}]",
                    r.client_id,
                    fmt_t(r.start),
                    silences.join(", ")
                ),
            ));
        }
    }
    for (t, v) in found {
        m.violation(t, v);
    }
}

fn describe(q: &Quiet) -> String {
    let end = q.end.map_or("for good".to_string(), fmt_t);
    format!(
        "{}..{}{}",
        fmt_t(q.start),
        end,
        if q.fast { " (fast)" } else { "" }
    )
}

/// A connect for an ID whose holder answers throughout must be refused; one whose
/// holder is silent throughout must be accepted.
fn duplicate_ids(m: &mut Model<'_>) {
    let lat = TIMING.latency_bound();
    let wait = TIMING.connect_wait;
    let mut found = Vec::new();
    for b in m.incs.values() {
        let tb = b.connecting;
        let Some(holder) = m.regs.iter().find(|r| {
            r.client_id == b.client_id && r.start < tb && r.end.is_none_or(|(t, _)| t > tb)
        }) else {
            continue;
        };
        let Some(a) = holder.owner.filter(|a| *a != b.inc) else {
            continue;
        };
        // Another connect for the same ID close by makes the outcome depend on which
        // one the server probes for.
        let crowded = m.incs.values().any(|o| {
            o.inc != b.inc
                && o.inc != a
                && o.client_id == b.client_id
                && o.connecting + wait + Duration::from_secs(1) >= tb
                && o.connecting <= tb + wait
        });
        if crowded
            || m.quiet_during(b.inc, tb, tb + wait)
            || m.server_changed_during(tb.saturating_sub(wait), tb + wait)
        {
            continue;
        }
        let accepted = b.connected.is_some();
        let refused = b
            .connect_error
            .as_deref()
            .is_some_and(|e| e.contains("clientID already registered"));
        let holder_closing = m
            .incs
            .get(&a)
            .and_then(|i| i.close_sent)
            .is_some_and(|c| c <= tb + wait + lat);
        if !m.quiet_during(a, tb.saturating_sub(lat), tb + wait + lat) && !holder_closing {
            if !refused {
                found.push((
                    tb,
                    format!(
                        "{} connected as {} while {a} holds that ID and answers: {}",
                        b.inc,
                        b.client_id,
                        outcome(b.connected, &b.connect_error)
                    ),
                ));
            }
        } else if m
            .quiet_of(a)
            .iter()
            .any(|q| q.covers(tb.saturating_sub(lat), tb + wait))
            && !accepted
        {
            found.push((
                tb,
                format!(
                    "{} could not take over {} from silent {a}: {}",
                    b.inc,
                    b.client_id,
                    outcome(b.connected, &b.connect_error)
                ),
            ));
        }
    }
    for (t, v) in found {
        m.violation(t, v);
    }
}

fn outcome(connected: Option<Duration>, error: &Option<String>) -> String {
    match (connected, error) {
        (Some(t), _) => format!("accepted at {}", fmt_t(t)),
        (None, Some(e)) => format!("refused with {e:?}"),
        (None, None) => "no answer".to_string(),
    }
}

/// The registrations read from the log agree with the server's own list at the end.
fn final_list_matches(m: &mut Model<'_>) {
    let Some((t, ids)) = m.final_read.clone() else {
        let end = m.plan.end;
        m.violation(
            end,
            "the server's client list was never read (server host down?)".into(),
        );
        return;
    };
    let from_log: BTreeSet<&str> = m
        .regs
        .iter()
        .filter(|r| r.start <= t && r.end.is_none_or(|(e, _)| e > t))
        .map(|r| r.client_id.as_str())
        .collect();
    let actual: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    if from_log != actual {
        let v = format!("server lists clients {actual:?} but its log says {from_log:?}");
        m.violation(t, v);
    }
}
