//! Token buckets for login limits ([`RateLimiter`]), and the memory of
//! which addresses failed recently ([`RecentFailures`]). What is limited and
//! when is decided in [`super::Auth::login`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets for one kind of key.
pub struct RateLimiter<K> {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Most keys kept before full buckets are forgotten.
const MAX_KEYS: usize = 10_000;

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    pub fn new(burst: u32, per_second: f64) -> Self {
        RateLimiter {
            burst: burst as f64,
            per_second,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Gives back a token taken for an attempt that turned out not to
    /// count (a successful login).
    pub fn give_back(&self, key: &K, now: Instant) {
        let mut buckets = self
            .buckets
            .lock()
            .expect("no panic while holding the lock");
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.tokens =
                (refill(bucket, now, self.burst, self.per_second) + 1.0).min(self.burst);
            bucket.at = now;
        }
    }

    /// Takes one token for `key`; `Err(wait)` says how long until one is free.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .expect("no panic while holding the lock");
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, b| refill(b, now, burst, rate) < burst);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        bucket.tokens = refill(bucket, now, self.burst, self.per_second);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

/// When each address last failed to log in, for [`RecentFailures::memory`].
pub struct RecentFailures<K> {
    memory: Duration,
    last: Mutex<HashMap<K, Instant>>,
}

impl<K: Eq + Hash + Clone> RecentFailures<K> {
    pub fn new(memory: Duration) -> Self {
        RecentFailures {
            memory,
            last: Mutex::new(HashMap::new()),
        }
    }

    pub fn record(&self, key: &K, now: Instant) {
        let mut last = self.last.lock().expect("no panic while holding the lock");
        if last.len() >= MAX_KEYS && !last.contains_key(key) {
            let memory = self.memory;
            last.retain(|_, at| now.saturating_duration_since(*at) < memory);
        }
        last.insert(key.clone(), now);
    }

    /// Whether `key` failed within the memory.
    pub fn failed_recently(&self, key: &K, now: Instant) -> bool {
        let last = self.last.lock().expect("no panic while holding the lock");
        last.get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.memory)
    }
}

fn refill(b: &Bucket, now: Instant, burst: f64, rate: f64) -> f64 {
    (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new(3, 1.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.take(&"a", t0).unwrap();
        }
        let wait = limiter.take(&"a", t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        limiter.take(&"b", t0).expect("keys are independent");
        limiter
            .take(&"a", t0 + Duration::from_secs(1))
            .expect("refilled");
        assert!(limiter.take(&"a", t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_token_given_back_is_there_again() {
        let limiter = RateLimiter::new(2, 0.001);
        let t0 = Instant::now();
        limiter.take(&"a", t0).unwrap();
        limiter.take(&"a", t0).unwrap();
        limiter.give_back(&"a", t0);
        limiter.take(&"a", t0).expect("the one given back");
        assert!(limiter.take(&"a", t0).is_err());
        limiter.give_back(&"b", t0);
        for _ in 0..2 {
            limiter.take(&"b", t0).unwrap();
        }
        assert!(limiter.take(&"b", t0).is_err(), "no more than the burst");
    }

    #[test]
    fn failures_are_remembered_for_a_while() {
        let recent = RecentFailures::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(!recent.failed_recently(&"a", t0));
        recent.record(&"a", t0);
        assert!(recent.failed_recently(&"a", t0 + Duration::from_secs(59)));
        assert!(!recent.failed_recently(&"a", t0 + Duration::from_secs(60)));
        assert!(!recent.failed_recently(&"b", t0));
    }
}
