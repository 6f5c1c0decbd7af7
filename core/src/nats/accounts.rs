//! The server side of accounts: one subscription index per account, and the
//! server's own subscriptions that carry imported streams and services across.
//!
//! An import is a subscription of the server in the account the messages come
//! from. A stream import sits in the exporter's index and hands each message to the
//! importer's local subscribers; since every server of a cluster holds the same
//! import, its interest is announced to routes and each server serves its own
//! clients. A service import sits in the importer's index and publishes each
//! request into the exporter, with a reply subject of the exporter's
//! `_R_.<prefix>.>` space that the server maps back to the requester's reply; it
//! is not announced, so that a request is forwarded once, by the requester's server.

use std::collections::VecDeque;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::{Auth, Server};
use crate::nats::account::{AccountId, ShareKind, REPLY_PREFIX};
use crate::nats::conn::{ConnId, Forward, Rename, Subscription};
use crate::nats::sublist::{SubKey, Sublist};
use crate::time::{Instant, Now};

/// How long the way back of a forwarded request is remembered (the NATS server's
/// default response threshold).
const RESPONSE_TTL: Duration = Duration::from_secs(120);

/// Hand-overs between accounts one message may take; more means imports that
/// lead in a circle.
const MAX_HOPS: u8 = 8;

/// Base-62 digits of the reply subjects, as the NATS server draws them.
const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// One account's subject space.
#[derive(Debug)]
pub(crate) struct AccountState {
    pub name: String,
    pub sublist: Sublist,
    /// `_R_.<6 digits>.`: replies of the requests forwarded into this account;
    /// made, and subscribed to, on the first such request.
    reply_prefix: Option<Box<[u8]>>,
    /// The server's own subscriptions in this account.
    forwards: Vec<SubKey>,
}

impl AccountState {
    pub fn new(name: &str) -> AccountState {
        AccountState {
            name: name.to_string(),
            sublist: Sublist::new(),
            reply_prefix: None,
            forwards: Vec::new(),
        }
    }
}

/// Where a message came from, which decides where it may go.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin<'a> {
    /// A client of this server (or a service import acting for one): local
    /// subscribers and routes.
    Client,
    /// A route, which chose this server for these queue groups: local subscribers.
    Route(&'a [&'a [u8]]),
    /// A stream import: the local subscribers of the importing account, since the
    /// other servers import the stream for their own.
    Import(u8),
}

impl Origin<'_> {
    fn hops(self) -> u8 {
        match self {
            Origin::Import(n) => n,
            _ => 0,
        }
    }
}

impl Forward {
    /// Whether routes must hear of this subscription.
    pub fn is_interest(&self) -> bool {
        !matches!(self, Forward::Service { .. })
    }
}

/// The account and reply subject of a requester.
type Requester = (AccountId, Box<[u8]>);

/// The way back of forwarded requests: reply subject in the exporter → requester.
#[derive(Debug, Default)]
pub(crate) struct Responses {
    routes: FxHashMap<Box<[u8]>, Requester>,
    made: VecDeque<(Instant, Box<[u8]>)>,
}

impl Server {
    /// The id of the account named `name`.
    pub(crate) fn account_id(&self, name: &str) -> Option<AccountId> {
        self.accounts
            .iter()
            .position(|a| a.name == name)
            .map(|i| AccountId(i as u32))
    }

    /// Builds the accounts of the configuration and their imports; accounts already
    /// known keep their id and subscriptions.
    pub(crate) fn setup_accounts(&mut self) {
        for a in self.accounts.iter_mut() {
            a.reply_prefix = None;
        }
        let old: Vec<SubKey> = self
            .accounts
            .iter_mut()
            .flat_map(|a| std::mem::take(&mut a.forwards))
            .collect();
        for key in old {
            self.remove_sub(key);
        }
        for a in self.cfg.accounts.clone() {
            if self.account_id(&a.name).is_none() {
                self.accounts.push(AccountState::new(&a.name));
            }
        }
        for a in self.cfg.accounts.clone() {
            let Some(importer) = self.account_id(&a.name) else {
                continue;
            };
            for im in &a.imports {
                let Some(exporter) = self.account_id(&im.account) else {
                    continue;
                };
                let (subject, to) = (im.subject.as_bytes(), im.to.as_bytes());
                match im.kind {
                    ShareKind::Stream => {
                        let rename = if to == subject {
                            Rename::Same
                        } else if to.ends_with(subject)
                            && to[..to.len() - subject.len()].ends_with(b".")
                        {
                            Rename::Prefix(to[..to.len() - subject.len()].into())
                        } else {
                            Rename::Literal(to.into())
                        };
                        let f = Forward::Stream {
                            into: importer,
                            rename,
                        };
                        self.add_forward(exporter, subject, f);
                    }
                    ShareKind::Service => {
                        let rename = if to == subject {
                            Rename::Same
                        } else {
                            Rename::Literal(subject.into())
                        };
                        let f = Forward::Service {
                            dest: exporter,
                            home: importer,
                            rename,
                        };
                        self.add_forward(importer, to, f);
                    }
                }
            }
        }
    }

    /// Subscribes the server in `account` to `subject` on behalf of `forward`.
    fn add_forward(&mut self, account: AccountId, subject: &[u8], forward: Forward) {
        let key = match self.free_subs.pop() {
            Some(k) => SubKey(k),
            None => {
                self.subs.push(None);
                SubKey((self.subs.len() - 1) as u32)
            }
        };
        let state = &mut self.accounts[account.0 as usize];
        if state.sublist.insert(subject, None, key).is_err() {
            self.free_subs.push(key.0);
            return;
        }
        state.forwards.push(key);
        let interest = forward.is_interest();
        self.subs[key.0 as usize] = Some(Subscription {
            conn: ConnId(0),
            account,
            forward: Some(forward),
            sid: Box::default(),
            subject: subject.into(),
            queue: None,
            max: None,
            delivered: 0,
        });
        if interest {
            self.local_interest(account, subject, None, true);
        }
    }

    /// Carries a message across accounts as `forward` says; true if someone got it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &mut self,
        now: Now,
        id: ConnId,
        forward: Forward,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
        origin: Origin<'_>,
    ) -> bool {
        let hops = origin.hops() + 1;
        if hops > MAX_HOPS {
            return false;
        }
        match forward {
            Forward::Stream { into, rename } => {
                let subject = rename.apply(subject);
                self.fan_out(
                    now,
                    id,
                    into,
                    &subject,
                    reply,
                    header_len,
                    payload,
                    Origin::Import(hops),
                )
            }
            Forward::Service { dest, home, rename } => {
                // The requester's server forwarded it already.
                if matches!(origin, Origin::Route(_)) {
                    return false;
                }
                let subject = rename.apply(subject);
                let reply = reply.map(|r| self.service_reply(now, dest, home, r));
                self.fan_out(
                    now,
                    id,
                    dest,
                    &subject,
                    reply.as_deref(),
                    header_len,
                    payload,
                    Origin::Client,
                )
            }
            Forward::Responses => {
                let Some((into, to)) = self.responses.routes.remove(&Box::<[u8]>::from(subject))
                else {
                    return false;
                };
                self.fan_out(
                    now,
                    id,
                    into,
                    &to,
                    reply,
                    header_len,
                    payload,
                    Origin::Client,
                )
            }
        }
    }

    /// A reply subject in `dest` whose answer goes to `reply` in account `from`.
    fn service_reply(
        &mut self,
        now: Now,
        dest: AccountId,
        from: AccountId,
        reply: &[u8],
    ) -> Vec<u8> {
        let prefix = match &self.accounts[dest.0 as usize].reply_prefix {
            Some(p) => p.clone(),
            None => {
                let mut p = REPLY_PREFIX.to_vec();
                p.extend(self.base62(6));
                p.push(b'.');
                let p: Box<[u8]> = p.into();
                self.accounts[dest.0 as usize].reply_prefix = Some(p.clone());
                let wildcard = [&p[..], b">"].concat();
                self.add_forward(dest, &wildcard, Forward::Responses);
                p
            }
        };
        let mut subject = prefix.to_vec();
        subject.extend(self.base62(6));
        let subject: Box<[u8]> = subject.into();
        let r = &mut self.responses;
        while let Some((at, key)) = r.made.front() {
            if now.mono.saturating_since(*at) < RESPONSE_TTL {
                break;
            }
            r.routes.remove(key);
            r.made.pop_front();
        }
        r.routes.insert(subject.clone(), (from, reply.into()));
        r.made.push_back((now.mono, subject.clone()));
        subject.into_vec()
    }

    fn base62(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| DIGITS[self.rng.below(62)]).collect()
    }

    /// The user entries whose connections a new authorization leaves as they are:
    /// same name, same secret, same account.
    pub(crate) fn same_user(old: &Auth, new: &Auth, name: &str) -> bool {
        let find = |a: &Auth| match a {
            Auth::Users { users, .. } => users.iter().find(|u| u.name == name).cloned(),
            _ => None,
        };
        matches!((find(old), find(new)), (Some(a), Some(b)) if a == b)
    }
}
