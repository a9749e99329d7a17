//! A pool's counters: calls, errors, latency histogram, result cache, sessions. Updated
//! with relaxed atomics on the call path; read as a [`Snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (microseconds) of the latency histogram's buckets; the last bucket takes
/// everything slower.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000, 1_000_000, 10_000_000,
];

/// The live counters.
#[derive(Debug, Default)]
pub struct Stats {
    calls: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    sessions: AtomicU64,
    session_calls: AtomicU64,
    hung_calls: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Calls finished, answered from the result cache or not.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls per latency bucket (see [`LATENCY_BUCKETS_US`]).
    pub latency: Vec<u64>,
    /// Cacheable calls answered from the result cache.
    pub cache_hits: u64,
    /// Cacheable calls the result cache could not answer.
    pub cache_misses: u64,
    /// Sessions checked out (see [`crate::pool::Pool::checkout`]).
    pub sessions: u64,
    /// Calls made within a session.
    pub session_calls: u64,
    /// Calls still running in Python past their deadline plus the hang grace.
    pub hung_calls: u64,
}

impl Stats {
    /// Records one finished call.
    pub fn record_call(&self, elapsed: Duration, ok: bool, in_session: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if in_session {
            self.session_calls.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Records a result-cache lookup.
    pub fn record_cache(&self, hit: bool) {
        let counter = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a session checkout.
    pub fn record_session(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a call found hung (see `PoolConfig::hang_grace`).
    pub fn record_hang(&self) {
        self.hung_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            calls: load(&self.calls),
            errors: load(&self.errors),
            latency: self.latency.iter().map(load).collect(),
            cache_hits: load(&self.cache_hits),
            cache_misses: load(&self.cache_misses),
            sessions: load(&self.sessions),
            session_calls: load(&self.session_calls),
            hung_calls: load(&self.hung_calls),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_latency_bucket() {
        let stats = Stats::default();
        stats.record_call(Duration::from_micros(40), true, false);
        stats.record_call(Duration::from_micros(150), false, true);
        stats.record_call(Duration::from_secs(60), true, false);
        stats.record_cache(true);
        stats.record_cache(false);
        stats.record_session();
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.calls, 3);
        assert_eq!(snapshot.errors, 1);
        assert_eq!(snapshot.latency[0], 1);
        assert_eq!(snapshot.latency[2], 1);
        assert_eq!(snapshot.latency[LATENCY_BUCKETS_US.len()], 1);
        assert_eq!((snapshot.cache_hits, snapshot.cache_misses), (1, 1));
        assert_eq!((snapshot.sessions, snapshot.session_calls), (1, 1));
    }
}
