//! Client-side pacing: one token bucket per API so a child stays under its share of the quota.
//!
//! The account's quota is shared by the Map's `MaxConcurrency` children, each pacing on its own,
//! so each bucket runs at `quota × (1 − reserve) ÷ share` with a burst of one token: with any
//! larger burst, children that start together would each spend it at once and their sum would
//! exceed the quota exactly when AWS measures it. With a burst of one, a child never exceeds its
//! share in any window, so neither does the sum of the children.

use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::ImportError;
use crate::apis::Api;
use crate::quotas::{MAX_RESERVE, Quotas};

/// A token bucket in its GCRA form (pure: time is passed in as the offset from any origin).
///
/// Reservations are handed out in call order, each at least one interval after the previous
/// one (after the burst), so concurrent callers share the rate fairly without holding a lock
/// while they wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    interval: Duration,
    tolerance: Duration,
    /// The theoretical arrival time of the next token.
    next: Duration,
}

impl TokenBucket {
    /// A bucket of `per_second` tokens a second holding at most `burst` (at least 1) tokens.
    /// The interval is rounded up to the nanosecond, so the rate is never exceeded.
    pub fn new(per_second: f64, burst: u32) -> Result<TokenBucket, ImportError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(ImportError::InvalidConfig(format!(
                "pacing rate must be a positive number, got {per_second}"
            )));
        }
        let nanos = (1e9 / per_second).ceil();
        // Saturates for absurdly small rates instead of overflowing.
        let interval = Duration::from_nanos(if nanos >= u64::MAX as f64 {
            u64::MAX
        } else {
            nanos as u64
        });
        let tolerance = interval.saturating_mul(burst.max(1) - 1);
        Ok(TokenBucket {
            interval,
            tolerance,
            next: Duration::ZERO,
        })
    }

    /// Time between tokens.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Reserves one token for a caller arriving at `now`; returns when it may proceed (≥ `now`).
    pub fn reserve(&mut self, now: Duration) -> Duration {
        let go = now.max(self.next.saturating_sub(self.tolerance));
        self.next = self.next.max(go).saturating_add(self.interval);
        go
    }
}

/// A set of APIs paced together: the import's [`Api`]s, or another command's (the CLI's
/// registry reads), each with its own bucket.
pub trait PacedApi: Copy + 'static {
    /// Every API of the set.
    const ALL: &'static [Self];
    /// The position of this API in [`PacedApi::ALL`].
    fn slot(self) -> usize;
}

impl PacedApi for Api {
    const ALL: &'static [Api] = &Api::ALL;
    fn slot(self) -> usize {
        Api::slot(self)
    }
}

/// Per-API token buckets shared by every concurrent caller in one task.
#[derive(Debug)]
pub struct Pacer<A = Api> {
    origin: Instant,
    rates: Vec<f64>,
    buckets: Vec<Mutex<TokenBucket>>,
    apis: PhantomData<fn(A)>,
}

impl Pacer<Api> {
    /// Paces each API at `quota × (1 − reserve) ÷ share` calls a second, burst 1.
    /// `reserve` must be in [0, [`MAX_RESERVE`]]; `share` (the Map's MaxConcurrency) at least 1.
    pub fn new(quotas: &Quotas, reserve: f64, share: u32) -> Result<Pacer, ImportError> {
        quotas.validate()?;
        if !(0.0..=MAX_RESERVE).contains(&reserve) {
            return Err(ImportError::InvalidConfig(format!(
                "quota reserve must be in [0, {MAX_RESERVE}], got {reserve}"
            )));
        }
        if share == 0 {
            return Err(ImportError::InvalidConfig(
                "quota share (MaxConcurrency) must be at least 1".into(),
            ));
        }
        Pacer::with_rates(|api| quotas.get(api) * (1.0 - reserve) / f64::from(share))
    }
}

impl<A: PacedApi> Pacer<A> {
    /// Paces each API of the set at `rate(api)` calls a second (positive), burst 1.
    pub fn with_rates(rate: impl Fn(A) -> f64) -> Result<Pacer<A>, ImportError> {
        let mut rates = vec![0.0; A::ALL.len()];
        let mut buckets = Vec::with_capacity(A::ALL.len());
        for api in A::ALL {
            let per_second = rate(*api);
            if let Some(slot) = rates.get_mut(api.slot()) {
                *slot = per_second;
            }
            buckets.push((api.slot(), Mutex::new(TokenBucket::new(per_second, 1)?)));
        }
        buckets.sort_by_key(|(slot, _)| *slot);
        Ok(Pacer {
            origin: Instant::now(),
            rates,
            buckets: buckets.into_iter().map(|(_, bucket)| bucket).collect(),
            apis: PhantomData,
        })
    }

    /// The paced rate of one API, calls per second.
    pub fn rate(&self, api: A) -> f64 {
        self.rates.get(api.slot()).copied().unwrap_or(0.0)
    }

    /// Waits until a call of `api` keeps this task within its rate.
    pub async fn acquire(&self, api: A) {
        let now = Instant::now();
        let go = match self.buckets.get(api.slot()) {
            Some(bucket) => {
                // A poisoned lock only means another caller panicked mid-reserve; the bucket's
                // state is still a valid schedule.
                let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
                bucket.reserve(now.saturating_duration_since(self.origin))
            }
            None => return,
        };
        let at = self.origin + go;
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_of_one_spaces_every_call() {
        let mut b = TokenBucket::new(10.0, 1).unwrap();
        assert_eq!(b.interval(), ms(100));
        assert_eq!(b.reserve(ms(0)), ms(0));
        assert_eq!(b.reserve(ms(0)), ms(100));
        assert_eq!(b.reserve(ms(0)), ms(200));
        // A caller arriving late is not penalised, nor does idle time bank tokens.
        assert_eq!(b.reserve(ms(1000)), ms(1000));
        assert_eq!(b.reserve(ms(1010)), ms(1100));
    }

    #[test]
    fn larger_burst_allows_that_many_at_once() {
        let mut b = TokenBucket::new(10.0, 3).unwrap();
        let times: Vec<_> = (0..5).map(|_| b.reserve(ms(0))).collect();
        assert_eq!(times, [ms(0), ms(0), ms(0), ms(100), ms(200)]);
    }

    #[test]
    fn rate_is_never_exceeded_for_odd_rates() {
        let mut b = TokenBucket::new(3.0, 1).unwrap();
        let times: Vec<_> = (0..30).map(|_| b.reserve(Duration::ZERO)).collect();
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_secs_f64(1.0 / 3.0));
        }
    }

    #[test]
    fn invalid_configuration_is_an_error() {
        assert!(TokenBucket::new(0.0, 1).is_err());
        assert!(TokenBucket::new(f64::NAN, 1).is_err());
        let q = Quotas::default();
        assert!(Pacer::new(&q, -0.1, 1).is_err());
        assert!(Pacer::new(&q, 0.6, 1).is_err());
        assert!(Pacer::new(&q, 0.2, 0).is_err());
        let mut bad = q;
        bad.set(Api::AttachPolicy, -1.0);
        assert!(Pacer::new(&bad, 0.2, 1).is_err());
    }

    #[test]
    fn rate_is_quota_less_the_reserve_over_share() {
        let p = Pacer::new(&Quotas::default(), 0.2, 4).unwrap();
        assert_eq!(p.rate(Api::CreateThing), 20.0);
        assert_eq!(p.rate(Api::RegisterCertificateWithoutCA), 2.0);
        assert!((p.rate(Api::AttachPolicy) - 3.0).abs() < 1e-9);
    }

    /// A set of APIs other than the import's, as the CLI's registry reads are.
    #[derive(Debug, Clone, Copy)]
    enum Reads {
        Slow,
        Fast,
    }

    impl PacedApi for Reads {
        const ALL: &'static [Reads] = &[Reads::Slow, Reads::Fast];
        fn slot(self) -> usize {
            self as usize
        }
    }

    #[tokio::test(start_paused = true)]
    async fn other_api_sets_get_their_own_buckets() {
        let pacer = Pacer::with_rates(|api| match api {
            Reads::Slow => 2.0,
            Reads::Fast => 50.0,
        })
        .unwrap();
        assert_eq!(pacer.rate(Reads::Slow), 2.0);
        assert_eq!(pacer.rate(Reads::Fast), 50.0);
        let start = Instant::now();
        for _ in 0..3 {
            pacer.acquire(Reads::Slow).await;
        }
        assert_eq!(start.elapsed(), ms(1000));
        assert!(Pacer::with_rates(|_: Reads| 0.0).is_err());
    }

    /// Largest number of events in any window of `window` length.
    fn max_in_window(times: &[Instant], window: Duration) -> usize {
        let mut sorted = times.to_vec();
        sorted.sort();
        (0..sorted.len())
            .map(|i| {
                sorted[i..]
                    .iter()
                    .take_while(|&&t| t < sorted[i] + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_never_exceed_the_share() {
        // 100/s × 0.8 ÷ 4 = 20/s per child; 16 concurrent tasks hammering CreateThing.
        let pacer = Arc::new(Pacer::new(&Quotas::default(), 0.8, 4).unwrap());
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let pacer = pacer.clone();
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..10 {
                    pacer.acquire(Api::CreateThing).await;
                    times.push(Instant::now());
                }
                times
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.extend(task.await.unwrap());
        }
        assert_eq!(times.len(), 160);
        let rate = pacer.rate(Api::CreateThing);
        // Any one-second window holds at most rate + 1 (the burst) calls…
        assert!(max_in_window(&times, Duration::from_secs(1)) <= rate as usize + 1);
        // …and the run as a whole takes as long as the rate demands, not much longer.
        let elapsed = times.iter().max().unwrap().duration_since(start);
        let ideal = Duration::from_secs_f64(159.0 / rate);
        assert!(elapsed >= ideal, "{elapsed:?} < {ideal:?}");
        assert!(
            elapsed <= ideal + ms(50),
            "{elapsed:?} much longer than {ideal:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn apis_are_paced_independently() {
        // RegisterCertificateWithoutCA at 10 × 0.8 = 8/s must not slow AttachThingPrincipal (80/s).
        let pacer = Pacer::new(&Quotas::default(), 0.8, 1).unwrap();
        let start = Instant::now();
        for _ in 0..8 {
            pacer.acquire(Api::RegisterCertificateWithoutCA).await;
        }
        let register_done = start.elapsed();
        assert!(register_done >= Duration::from_secs_f64(7.0 / 8.0));
        let t = Instant::now();
        for _ in 0..8 {
            pacer.acquire(Api::AttachThingPrincipal).await;
        }
        assert!(t.elapsed() <= Duration::from_secs_f64(7.0 / 80.0) + ms(2));
    }

    #[tokio::test(start_paused = true)]
    async fn odd_rate_windows_hold() {
        // AttachPolicy 15 × 0.8 ÷ 3 = 4/s.
        let pacer = Pacer::new(&Quotas::default(), 0.8, 3).unwrap();
        let mut times = Vec::new();
        for _ in 0..25 {
            pacer.acquire(Api::AttachPolicy).await;
            times.push(Instant::now());
        }
        assert!(max_in_window(&times, Duration::from_secs(1)) <= 5);
        assert!(max_in_window(&times, Duration::from_millis(250)) <= 1);
    }
}
