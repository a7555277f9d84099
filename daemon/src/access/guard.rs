//! Repeated failures and refusals. Authentication failures are counted per
//! key (a peer's IP or uid, and the identity claimed); after `slow_after`
//! failures within the window each answer is delayed, and after
//! `lock_after` the key is refused outright until `lockout` has passed.
//!
//! Refusals are audited, aggregated so that a flood does not become a flood
//! of entries: the first refusal of a kind (same actor, method and reason)
//! is recorded at once; the ones that follow within `burst_window` are
//! counted and recorded as one entry with `repeated = N` when the window
//! closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rkm_proto::audit_entry::{Outcome, action};
use rkm_proto::encoding::text::excerpt;

use crate::audit::{AuditLog, Event};

/// Thresholds of [`Guard`].
#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// Failures after which answers are delayed.
    pub slow_after: u32,
    /// Failures after which the key is locked out.
    pub lock_after: u32,
    /// How long failures are remembered, and how long a burst of refusals
    /// is aggregated.
    pub window: Duration,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

/// The most keys remembered; past it the oldest failures are forgotten
/// first (a flood of fresh IPs cannot exhaust memory).
const MAX_TRACKED: usize = 50_000;

/// What to do with a caller before looking at its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Admit after this delay (recent failures).
    Delay(Duration),
    /// Refuse until this time.
    Locked {
        until: SystemTime,
    },
}

#[derive(Debug)]
struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<(Instant, SystemTime)>,
}

/// One refusal, for the audit log.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Who was refused, as far as known (`Identity::actor`).
    pub actor: String,
    /// `tcp:ADDR` or `socket`.
    pub peer: String,
    /// The gRPC method, or `tls-handshake`.
    pub method: String,
    /// The ceremony or key the call concerned, when known.
    pub subject: Option<String>,
    /// Why, in words (never a secret).
    pub reason: String,
    /// Extra facts (certificate presented, role needed…).
    pub details: Vec<(&'static str, String)>,
}

#[derive(Debug)]
struct Burst {
    started: Instant,
    repeated: u64,
    last: Refusal,
}

#[derive(Debug, Default)]
struct State {
    failures: HashMap<String, Failures>,
    bursts: HashMap<(String, String, String), Burst>,
}

/// Counts failures and audits refusals; shared by the TLS acceptor and the
/// access layer.
#[derive(Debug)]
pub struct Guard {
    audit: AuditLog,
    settings: GuardSettings,
    state: Mutex<State>,
}

impl Guard {
    pub fn new(audit: AuditLog, settings: GuardSettings) -> Arc<Self> {
        Arc::new(Self {
            audit,
            settings,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters, not invariants.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How to treat a caller known by `keys` (its peer, its claimed identity).
    pub fn admission(&self, keys: &[&str]) -> Admission {
        let now = Instant::now();
        let mut state = self.state();
        let mut admission = Admission::Admit;
        for key in keys {
            let Some(failures) = state.failures.get_mut(*key) else {
                continue;
            };
            if let Some((until, until_wall)) = failures.locked_until {
                if now < until {
                    return Admission::Locked { until: until_wall };
                }
                state.failures.remove(*key);
                continue;
            }
            if now.duration_since(failures.since) > self.settings.window {
                state.failures.remove(*key);
                continue;
            }
            if failures.count >= self.settings.slow_after {
                let extra = failures.count - self.settings.slow_after;
                let delay = Duration::from_millis(250u64 << extra.min(4));
                if let Admission::Delay(current) = admission {
                    admission = Admission::Delay(current.max(delay));
                } else {
                    admission = Admission::Delay(delay);
                }
            }
        }
        admission
    }

    /// Counts one authentication failure against each of `keys`; audits a
    /// lockout when one begins.
    pub async fn failed(&self, keys: &[&str], peer: &str) {
        let mut locked = Vec::new();
        {
            let now = Instant::now();
            let mut state = self.state();
            if state.failures.len() >= MAX_TRACKED {
                forget_oldest(&mut state.failures);
            }
            for key in keys {
                let failures = state.failures.entry((*key).to_owned()).or_insert(Failures {
                    count: 0,
                    since: now,
                    locked_until: None,
                });
                if now.duration_since(failures.since) > self.settings.window {
                    failures.count = 0;
                    failures.since = now;
                }
                failures.count += 1;
                if failures.count >= self.settings.lock_after && failures.locked_until.is_none() {
                    let until = SystemTime::now() + self.settings.lockout;
                    failures.locked_until = Some((now + self.settings.lockout, until));
                    locked.push(((*key).to_owned(), failures.count, until));
                }
            }
        }
        for (key, count, until) in locked {
            tracing::warn!(%key, count, "locking out after repeated authentication failures");
            let event = Event::ok(key.clone(), action::ACCESS_LOCKOUT)
                .with_outcome(Outcome::Refused)
                .detail("peer", peer)
                .detail("failures", count.to_string())
                .detail(
                    "until",
                    rkm_proto::encoding::time::format_rfc3339_seconds(until),
                );
            if let Err(error) = self.audit.record(event).await {
                tracing::error!(%error, "could not audit a lockout");
            }
        }
    }

    /// Audits a refusal, aggregated with the same kind in a burst.
    pub async fn refused(&self, refusal: Refusal) {
        let burst_key = (
            refusal.actor.clone(),
            refusal.method.clone(),
            refusal.reason.clone(),
        );
        let first = {
            let mut state = self.state();
            match state.bursts.get_mut(&burst_key) {
                Some(burst) => {
                    burst.repeated += 1;
                    burst.last = refusal.clone();
                    false
                }
                None => {
                    if state.bursts.len() < MAX_TRACKED {
                        state.bursts.insert(
                            burst_key,
                            Burst {
                                started: Instant::now(),
                                repeated: 0,
                                last: refusal.clone(),
                            },
                        );
                    }
                    true
                }
            }
        };
        if first {
            self.record(&refusal, None).await;
        }
    }

    /// Records the bursts whose window has closed; called once a second.
    pub async fn flush_bursts(&self, everything: bool) {
        let closed: Vec<Burst> = {
            let now = Instant::now();
            let mut state = self.state();
            let keys: Vec<_> = state
                .bursts
                .iter()
                .filter(|(_, burst)| {
                    everything || now.duration_since(burst.started) >= self.settings.window
                })
                .map(|(key, _)| key.clone())
                .collect();
            keys.into_iter()
                .filter_map(|key| state.bursts.remove(&key))
                .collect()
        };
        for burst in closed {
            if burst.repeated > 0 {
                self.record(&burst.last, Some(burst.repeated)).await;
            }
        }
    }

    async fn record(&self, refusal: &Refusal, repeated: Option<u64>) {
        let mut event = Event::ok(excerpt(&refusal.actor), action::ACCESS_REFUSED)
            .with_outcome(Outcome::Refused)
            .subject(excerpt(
                refusal.subject.as_deref().unwrap_or(&refusal.method),
            ))
            .detail("method", excerpt(&refusal.method))
            .detail("peer", refusal.peer.clone())
            .detail("reason", refusal.reason.clone());
        for (name, value) in &refusal.details {
            event = event.detail(name, excerpt(value));
        }
        if let Some(repeated) = repeated {
            event = event
                .detail("repeated", repeated.to_string())
                .detail("window_seconds", self.settings.window.as_secs().to_string());
        }
        if let Err(error) = self.audit.record(event).await {
            tracing::error!(%error, "could not audit a refused call");
        }
    }
}

fn forget_oldest(failures: &mut HashMap<String, Failures>) {
    let mut by_age: Vec<(Instant, String)> = failures
        .iter()
        .filter(|(_, f)| f.locked_until.is_none())
        .map(|(key, f)| (f.since, key.clone()))
        .collect();
    by_age.sort();
    for (_, key) in by_age.into_iter().take(MAX_TRACKED / 10) {
        failures.remove(&key);
    }
}
