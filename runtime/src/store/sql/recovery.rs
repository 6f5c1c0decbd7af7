//! Reading the tables back at startup: the server info row, clients, channels with
//! their message counters, and each subscription with its pending sequences.

use std::collections::{BTreeSet, HashMap};

use stan_core::store::{
    MsgsState, Recovered, RecoveredChannel, RecoveredSub, Result, Store, StoreError,
};
use stan_core::streaming::pb::ClientInfo;

use super::conn::Val;
use super::pending::{parse_seqs, PendingRow, Sub};
use super::stmts::*;
use super::{err, Chan, SqlStore, SQL_VERSION};
use crate::store::proto;

impl SqlStore {
    /// Everything the tables hold, checked (STORES §3.3–§3.6).
    pub(super) fn recover_all(&mut self) -> Result<Recovered> {
        let _ = self.flush();
        self.channels.clear();
        self.dirty_subs.clear();
        let rows = self.query(RECOVER_SERVER_INFO, vec![])?;
        let server_info = match rows.first() {
            None => None,
            Some(row) => {
                let version = row[2].int().map_err(StoreError)?;
                if version != SQL_VERSION {
                    return err(format!(
                        "sql: unsupported version: {version} (supports [1..{SQL_VERSION}])"
                    ));
                }
                let info = proto::decode_server_info(row[1].bytes().unwrap_or_default())
                    .map_err(|e| StoreError(format!("sql: unable to decode server info: {e}")))?;
                let id = row[0].text();
                if id != info.cluster_id {
                    return err(format!(
                        "sql: id {id:?} in column does not match cluster ID in data {:?}",
                        info.cluster_id
                    ));
                }
                Some(info)
            }
        };
        self.max_channel_id = self.query_int(RECOVER_MAX_CHANNEL_ID, vec![])?;
        self.max_sub_id = self.query_int(RECOVER_MAX_SUB_ID, vec![])? as u64;
        let mut clients = Vec::new();
        for row in self.query(RECOVER_CLIENTS, vec![])? {
            let client = match row[2].bytes() {
                Some(b) => proto::decode_client_info(b).map_err(|e| {
                    StoreError(format!(
                        "sql: unable to decode client {:?}: {e}",
                        row[0].text()
                    ))
                })?,
                None => ClientInfo {
                    id: row[0].text(),
                    hb_inbox: row[1].text(),
                    ..ClientInfo::default()
                },
            };
            clients.push(client);
        }
        let mut list = Vec::new();
        for row in self.query(RECOVER_CHANNELS, vec![])? {
            let id = row[0].int().map_err(StoreError)?;
            let maxseq = row[2].int().map_err(StoreError)? as u64;
            list.push((id, row[1].text(), maxseq));
        }
        let mut channels = Vec::with_capacity(list.len());
        for (id, name, maxseq) in list {
            channels.push(self.recover_channel(id, name, maxseq)?);
        }
        channels.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Recovered {
            server_info,
            clients,
            channels,
        })
    }

    fn recover_channel(&mut self, id: i64, name: String, maxseq: u64) -> Result<RecoveredChannel> {
        let limits = self.channel_limits(&name);
        let stored = self.query(RECOVER_CHANNEL_LIMITS, vec![Val::Int(id)])?;
        let want = [
            limits.max_msgs,
            limits.max_bytes,
            limits.max_age.as_nanos() as i64,
        ];
        if let Some(row) = stored.first() {
            let have: Vec<i64> = row.iter().map(|v| v.int().unwrap_or(0)).collect();
            if have != want {
                self.exec(
                    RECOVER_UPDATE_CHANNEL_LIMITS,
                    vec![
                        Val::Int(want[0]),
                        Val::Int(want[1]),
                        Val::Int(want[2]),
                        Val::Int(id),
                    ],
                )?;
            }
        }
        let m = self.query(RECOVER_CHANNEL_MSGS, vec![Val::Int(id)])?;
        let m: Vec<i64> = match m.first() {
            Some(r) => r
                .iter()
                .map(Val::int)
                .collect::<std::result::Result<_, _>>()
                .map_err(StoreError)?,
            None => vec![0; 5],
        };
        let (count, min, max, size) = (m[0] as u64, m[1] as u64, m[2] as u64, m[3] as u64);
        let mut subs_out = Vec::new();
        let mut subs = HashMap::new();
        let mut top_sent = 0;
        let purge_below = if count > 0 { min } else { max.max(maxseq) + 1 };
        for row in self.query(RECOVER_CHANNEL_SUBS, vec![Val::Int(id)])? {
            let Some(data) = row[1].bytes() else {
                continue;
            };
            let mut state = proto::decode_sub_state(data).map_err(|e| {
                StoreError(format!(
                    "sql: unable to decode a subscription of channel {name:?}: {e}"
                ))
            })?;
            let subid = state.id;
            let mut sub = Sub {
                subid,
                next_row: 1,
                ..Sub::default()
            };
            let column = row[0].int().map_err(StoreError)? as u64;
            sub.column_last_sent = column;
            let mut last_sent = column.max(state.last_sent);
            self.exec(
                RECOVER_PURGE_SUB_PENDING,
                vec![Val::u64(subid), Val::u64(purge_below)],
            )?;
            let mut rows = self.query(RECOVER_SUB_PENDING, vec![Val::u64(subid)])?;
            let mut parsed = Vec::with_capacity(rows.len());
            for r in rows.drain(..) {
                let n = r[0].int().map_err(StoreError)? as u64;
                let seq = r[1].int().map_err(StoreError)? as u64;
                let ls = r[2].int().map_err(StoreError)? as u64;
                let pending = parse_seqs(&r[3], subid, "pending")?;
                let acks = parse_seqs(&r[4], subid, "acks")?;
                parsed.push((n, seq, ls, pending, acks));
            }
            parsed.sort_by_key(|p| p.0);
            let mut pending_set: BTreeSet<u64> = BTreeSet::new();
            // Sequences of write-through rows (left by a run without caching).
            let mut plain: BTreeSet<u64> = BTreeSet::new();
            let mut gone = Vec::new();
            for (n, seq, ls, pending, acks) in parsed {
                sub.next_row = sub.next_row.max(n + 1);
                last_sent = last_sent.max(ls).max(seq);
                if seq > 0 {
                    pending_set.insert(seq);
                    plain.insert(seq);
                    continue;
                }
                sub.rows.insert(
                    n,
                    PendingRow {
                        unacked: 0,
                        ..PendingRow::default()
                    },
                );
                for s in pending {
                    if pending_set.insert(s) {
                        sub.seq_row.insert(s, n);
                        if let Some(r) = sub.rows.get_mut(&n) {
                            r.unacked += 1;
                        }
                    }
                }
                for s in acks {
                    if pending_set.remove(&s) {
                        gone.extend(sub.apply_ack(n, s));
                        if plain.remove(&s) {
                            self.exec(SUB_DELETE_PENDING, vec![Val::u64(subid), Val::u64(s)])?;
                        }
                    }
                }
            }
            // Rows left with nothing to say.
            let rows: Vec<u64> = sub.rows.keys().copied().collect();
            for n in rows {
                gone.extend(sub.release(n));
            }
            if !gone.is_empty() && sub.column_last_sent < last_sent {
                self.exec(
                    SUB_UPDATE_LAST_SENT,
                    vec![Val::u64(last_sent), Val::Int(id), Val::u64(subid)],
                )?;
                sub.column_last_sent = last_sent;
            }
            for n in gone {
                self.exec(SUB_DELETE_PENDING_ROW, vec![Val::u64(subid), Val::u64(n)])?;
            }
            sub.last_sent = last_sent;
            sub.written_last_sent = last_sent;
            top_sent = top_sent.max(last_sent);
            state.last_sent = last_sent;
            subs_out.push(RecoveredSub {
                state,
                pending: pending_set.into_iter().collect(),
            });
            subs.insert(subid, sub);
        }
        let max_sub_id = self.query_int(RECOVER_CHANNEL_MAX_SUB_ID, vec![Val::Int(id)])? as u64;
        let last = max.max(maxseq);
        let state = if top_sent.max(maxseq) > max || count == 0 {
            let top = top_sent.max(last);
            MsgsState {
                count: 0,
                bytes: 0,
                first: if top > 0 { top + 1 } else { 0 },
                last: top,
            }
        } else {
            MsgsState {
                count,
                bytes: size,
                first: min,
                last,
            }
        };
        self.channels.insert(
            name.clone(),
            Chan {
                subs,
                ..Chan::new(id, state, true)
            },
        );
        Ok(RecoveredChannel {
            name,
            msgs: state,
            subs: subs_out,
            max_sub_id,
        })
    }
}
