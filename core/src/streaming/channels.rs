//! Channel creation and the limits that remove messages or whole channels over time
//! (BEHAVIOUR §2.2, §4.4.4, §9).

use std::time::Duration;

use super::server::{Streaming, Timer};
use super::state::Channel;
use crate::log::Level;
use crate::time::{Instant, Now};

fn nanos(d: i64) -> Duration {
    Duration::from_nanos(u64::try_from(d).unwrap_or(0))
}

impl Streaming {
    /// Finds a channel, creating it on first use; the error is what the client sees.
    pub(crate) fn lookup_or_create_channel(&mut self, now: Now, name: &str) -> Result<(), String> {
        if let Some(ch) = self.channels.get(name) {
            return if ch.deleting {
                Err("stan: channel is being deleted".into())
            } else {
                Ok(())
            };
        }
        if let Some(existing) = self.channels.keys().find(|k| k.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "rejecting channel {name:?} because channel {existing:?} alreay exists (different cases not allowed)"
            ));
        }
        let max = self.cfg.limits.max_channels;
        if max > 0 && self.channels.len() as i64 >= max {
            return Err("too many channels".into());
        }
        if let Err(e) = self.store.create_channel(name) {
            let err = e.to_string();
            self.log(
                Level::Error,
                format!("Creating channel {name:?} failed: {err}"),
            );
            return Err(err);
        }
        let mut ch = Channel::new(self.limits.for_channel(name));
        ch.last_activity_ns = now.wall_ns;
        let inactivity = ch.limits.max_inactivity;
        self.channels.insert(name.to_string(), ch);
        if inactivity > 0 {
            self.arm_inactivity(now.mono + nanos(inactivity), name);
        }
        self.log(Level::Info, format!("Channel {name:?} has been created"));
        Ok(())
    }

    fn arm_inactivity(&mut self, at: Instant, name: &str) {
        if let Some(ch) = self.channels.get_mut(name) {
            ch.inactivity_at = Some(at);
            self.arm(at, Timer::Inactivity(name.to_string()));
        }
    }

    /// Restarts the inactivity clock when the channel has no active subscription left.
    pub(crate) fn channel_idle_check(&mut self, now: Now, name: &str) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let inactivity = ch.limits.max_inactivity;
        if inactivity <= 0 || ch.has_active_subs() || ch.inactivity_at.is_some() {
            return;
        }
        ch.last_activity_ns = now.wall_ns;
        self.arm_inactivity(now.mono + nanos(inactivity), name);
    }

    pub(crate) fn inactivity_fired(&mut self, now: Now, at: Instant, name: &str) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        if ch.inactivity_at != Some(at) {
            return;
        }
        ch.inactivity_at = None;
        if ch.has_active_subs() {
            return;
        }
        let idle = now.wall_ns.saturating_sub(ch.last_activity_ns);
        let limit = ch.limits.max_inactivity;
        if idle < limit {
            let rest = nanos(limit - idle);
            self.arm_inactivity(now.mono + rest, name);
            return;
        }
        ch.deleting = true;
        match self.store.delete_channel(name) {
            Ok(()) => {
                let ch = self.channels.remove(name).expect("checked above");
                for sub in ch.subs.values() {
                    if sub.ack_sid != 0 {
                        self.ack_sids.remove(&sub.ack_sid);
                        self.actions
                            .push_back(super::server::Action::Unsubscribe { sid: sub.ack_sid });
                    }
                }
                for client in self.clients.values_mut() {
                    client.subs.retain(|(n, _)| n != name);
                }
                self.log(Level::Info, format!("Channel {name:?} has been deleted"));
            }
            Err(e) => {
                self.log(
                    Level::Error,
                    format!("Unable to delete channel {name:?}: {e}"),
                );
                if let Some(ch) = self.channels.get_mut(name) {
                    ch.deleting = false;
                }
                self.arm_inactivity(now.mono + nanos(limit), name);
            }
        }
    }

    /// Arms the timer for the oldest message's expiry under `max_age`.
    pub(crate) fn arm_max_age(&mut self, now: Now, name: &str) {
        let Some(ch) = self.channels.get(name) else {
            return;
        };
        let max_age = ch.limits.max_age;
        if max_age <= 0 || ch.age_at.is_some() {
            return;
        }
        let st = self.store.msgs_state(name);
        if st.count == 0 {
            return;
        }
        let Ok(Some(ts)) = self.store.timestamp(name, st.first) else {
            return;
        };
        let expires_wall = ts.saturating_add(max_age);
        let wait = nanos(expires_wall.saturating_sub(now.wall_ns));
        let at = now.mono + wait;
        self.channels.get_mut(name).expect("checked above").age_at = Some(at);
        self.arm(at, Timer::MaxAge(name.to_string()));
    }

    /// Removes every message whose age reached `max_age`, oldest first.
    pub(crate) fn max_age_fired(&mut self, now: Now, at: Instant, name: &str) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        if ch.age_at != Some(at) {
            return;
        }
        ch.age_at = None;
        let max_age = ch.limits.max_age;
        loop {
            let st = self.store.msgs_state(name);
            if st.count == 0 {
                break;
            }
            match self.store.timestamp(name, st.first) {
                Ok(Some(ts)) if now.wall_ns.saturating_sub(ts) >= max_age => {
                    if let Err(e) = self.store.remove_oldest(name) {
                        self.log(
                            Level::Error,
                            format!("Unable to expire messages of {name:?}: {e}"),
                        );
                        break;
                    }
                }
                _ => break,
            }
        }
        self.arm_max_age(now, name);
    }
}
