//! Client-side pacing: one token bucket per API so a holder stays under the rate it was granted.
//!
//! Each API's rate is a grant (from the account-wide budget, or the static share
//! `quota × (1 − reserve) ÷ MaxConcurrency` when there is none) times an AIMD factor that drops
//! on throttles: the grant says what the budget allows, the factor what IoT actually takes.
//! Buckets hold a burst of one token: with any larger burst, holders that start together would
//! each spend it at once and their sum would exceed the quota exactly when AWS measures it. With
//! a burst of one, a holder never exceeds its rate in any window, so neither does the sum.
//!
//! A token is taken only when it is due (no reservations ahead), so a rate that changes while
//! callers wait applies to every one of them at once: a grant that falls does not leave a queue
//! of calls spaced at the old rate, and one that rises does not leave them waiting on it.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::ImportError;
use crate::apis::Api;
use crate::quotas::{MAX_RESERVE, Quotas};

/// A token bucket in its GCRA form (pure: time is passed in as the offset from any origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    interval: Duration,
    burst: u32,
    tolerance: Duration,
    /// The theoretical arrival time of the next token (zero until the first is taken).
    next: Duration,
}

impl TokenBucket {
    /// A bucket of `per_second` tokens a second holding at most `burst` (at least 1) tokens.
    /// The interval is rounded up to the nanosecond, so the rate is never exceeded.
    pub fn new(per_second: f64, burst: u32) -> Result<TokenBucket, ImportError> {
        let interval = interval_of(per_second)?;
        let burst = burst.max(1);
        Ok(TokenBucket {
            interval,
            burst,
            tolerance: interval.saturating_mul(burst - 1),
            next: Duration::ZERO,
        })
    }

    /// Time between tokens.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Changes the rate. The last token taken stays where it was and the next one comes a new
    /// interval after it, so the change neither releases a burst nor strands a caller on the
    /// old, longer interval.
    pub fn set_rate(&mut self, per_second: f64) -> Result<(), ImportError> {
        let interval = interval_of(per_second)?;
        if interval == self.interval {
            return Ok(());
        }
        if self.next > Duration::ZERO {
            let last = self.next.saturating_sub(self.interval);
            self.next = last.saturating_add(interval);
        }
        self.interval = interval;
        self.tolerance = interval.saturating_mul(self.burst - 1);
        Ok(())
    }

    /// Reserves one token for a caller arriving at `now`; returns when it may proceed (≥ `now`).
    /// Reservations are handed out in call order, each at least one interval after the previous
    /// one (after the burst).
    pub fn reserve(&mut self, now: Duration) -> Duration {
        let go = now.max(self.next.saturating_sub(self.tolerance));
        self.next = self.next.max(go).saturating_add(self.interval);
        go
    }

    /// Takes a token if one is due at `now`; otherwise `Err` with when the next one is. A token
    /// taken up to [`TIMER_SLACK`] after it was due keeps its due time, so timer rounding does
    /// not drift the rate down.
    pub fn try_take(&mut self, now: Duration) -> Result<(), Duration> {
        let due = self.next.saturating_sub(self.tolerance);
        if due > now {
            return Err(due);
        }
        let late = now.saturating_sub(self.next);
        let at = if late <= TIMER_SLACK { self.next } else { now };
        self.next = at.saturating_add(self.interval);
        Ok(())
    }
}

/// Tokio's timers wake up to a millisecond late (they round up to whole milliseconds).
pub const TIMER_SLACK: Duration = Duration::from_millis(1);

/// The interval of a positive finite rate, rounded up to the nanosecond; saturates for
/// absurdly small rates instead of overflowing.
fn interval_of(per_second: f64) -> Result<Duration, ImportError> {
    if !(per_second.is_finite() && per_second > 0.0) {
        return Err(ImportError::InvalidConfig(format!(
            "pacing rate must be a positive number, got {per_second}"
        )));
    }
    let nanos = (1e9 / per_second).ceil();
    Ok(Duration::from_nanos(if nanos >= u64::MAX as f64 {
        u64::MAX
    } else {
        nanos as u64
    }))
}

/// The lowest AIMD factor: however often IoT throttles, a holder keeps a fifth of its grant, so
/// it still makes progress (and hears when the throttling stops) instead of starving.
pub const AIMD_FLOOR: f64 = 0.2;
/// The multiplicative decrease on a throttle: a gentle 10 %, since the grant already keeps
/// holders under the quota and throttles mean only a competitor outside the budget.
pub const AIMD_DECREASE: f64 = 0.9;
/// At most one decrease per this long: the calls in flight when IoT starts throttling all come
/// back throttled, and that burst is one signal, not many.
pub const AIMD_DECREASE_SPACING: Duration = Duration::from_secs(1);
/// The additive increase, per [`AIMD_INCREASE_EVERY`] without a throttle: from the floor back
/// to the full grant in 48 s, slow enough not to re-trigger the throttle at once.
pub const AIMD_INCREASE: f64 = 0.05;
/// How long without a throttle earns one [`AIMD_INCREASE`]. Beside a caller outside the budget,
/// each increase is a probe that IoT answers with a throttle once the sum passes the quota: 3 s
/// between probes throttled 1.5 % of the contested API's calls where 2 s throttled 2.1 %, for the
/// same share of what the caller leaves (README, "Sharing the quota").
pub const AIMD_INCREASE_EVERY: Duration = Duration::from_secs(3);

/// Additive-increase, multiplicative-decrease of the share of a grant a holder uses (pure:
/// time is passed in as the offset from any origin). The increase is computed when asked, from
/// the time since the last throttle, so nothing has to tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Aimd {
    /// The factor at `since`.
    factor: f64,
    /// The last throttle (or the start).
    since: Duration,
    /// The last decrease, if any.
    decreased_at: Option<Duration>,
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd {
            factor: 1.0,
            since: Duration::ZERO,
            decreased_at: None,
        }
    }
}

impl Aimd {
    /// The factor at `now`, in [[`AIMD_FLOOR`], 1].
    pub fn factor(&self, now: Duration) -> f64 {
        if self.factor >= 1.0 {
            return 1.0;
        }
        let quiet = now.saturating_sub(self.since);
        let steps = (quiet.as_nanos() / AIMD_INCREASE_EVERY.as_nanos()) as f64;
        (self.factor + AIMD_INCREASE * steps).min(1.0)
    }

    /// A throttle at `now`: decrease (unless one came less than a second ago) and restart the
    /// quiet time that earns increases.
    pub fn throttled(&mut self, now: Duration) {
        let mut factor = self.factor(now);
        let spaced = self
            .decreased_at
            .is_none_or(|at| now.saturating_sub(at) >= AIMD_DECREASE_SPACING);
        if spaced {
            factor = (factor * AIMD_DECREASE).max(AIMD_FLOOR);
            self.decreased_at = Some(now);
        }
        self.factor = factor;
        self.since = now;
    }
}

/// A set of APIs paced together: the import's [`Api`]s, or another command's (the CLI's
/// registry reads), each with its own bucket.
pub trait PacedApi: Copy + 'static {
    /// Every API of the set.
    const ALL: &'static [Self];
    /// The position of this API in [`PacedApi::ALL`].
    fn slot(self) -> usize;
    /// The AWS operation name, under which the account-wide budget shares the API.
    fn name(self) -> &'static str;
}

impl PacedApi for Api {
    const ALL: &'static [Api] = &Api::ALL;
    fn slot(self) -> usize {
        Api::slot(self)
    }
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// Callers waiting for a token look at their API's rate again at least this often, so a grant
/// that rises (from zero too) reaches callers already waiting on a long interval.
const RECHECK: Duration = Duration::from_millis(250);

/// One API's pacing: what it was granted, how much of that IoT lets it use, and its bucket.
#[derive(Debug)]
struct Lane {
    grant: f64,
    aimd: Aimd,
    bucket: TokenBucket,
}

impl Lane {
    fn rate(&self, now: Duration, aimd: bool) -> f64 {
        if aimd {
            self.grant * self.aimd.factor(now)
        } else {
            self.grant
        }
    }
}

/// Per-API token buckets shared by every concurrent caller in one task, each at its API's
/// grant × AIMD factor.
#[derive(Debug)]
pub struct Pacer<A = Api> {
    origin: Instant,
    lanes: Vec<Mutex<Lane>>,
    aimd: bool,
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
    /// Paces each API of the set at `rate(api)` calls a second (positive), burst 1, with AIMD.
    pub fn with_rates(rate: impl Fn(A) -> f64) -> Result<Pacer<A>, ImportError> {
        let mut lanes = Vec::with_capacity(A::ALL.len());
        for api in A::ALL {
            let grant = rate(*api);
            let lane = Lane {
                grant,
                aimd: Aimd::default(),
                bucket: TokenBucket::new(grant, 1)?,
            };
            lanes.push((api.slot(), Mutex::new(lane)));
        }
        lanes.sort_by_key(|(slot, _)| *slot);
        Ok(Pacer {
            origin: Instant::now(),
            lanes: lanes.into_iter().map(|(_, lane)| lane).collect(),
            aimd: true,
            apis: PhantomData,
        })
    }

    /// The same pacer paced at its grants only: throttles no longer slow it (the "no AIMD" arm
    /// of the measurements).
    pub fn without_aimd(mut self) -> Pacer<A> {
        self.aimd = false;
        self
    }

    /// Time since the pacer's origin: the clock the pure parts run on.
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    /// Runs `f` on one API's lane. A poisoned lock only means another caller panicked
    /// mid-update; the lane is still a valid schedule.
    fn with_lane<T>(&self, api: A, f: impl FnOnce(&mut Lane) -> T) -> Option<T> {
        let lane = self.lanes.get(api.slot())?;
        let mut lane = lane.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&mut lane))
    }

    /// The rate one API is paced at now (its grant × AIMD factor), calls per second.
    pub fn rate(&self, api: A) -> f64 {
        let now = self.now();
        self.with_lane(api, |lane| lane.rate(now, self.aimd))
            .unwrap_or(0.0)
    }

    /// The rate one API was granted, calls per second.
    pub fn grant(&self, api: A) -> f64 {
        self.with_lane(api, |lane| lane.grant).unwrap_or(0.0)
    }

    /// Every API with the rate it is paced at now.
    pub fn rates(&self) -> Vec<(A, f64)> {
        A::ALL.iter().map(|api| (*api, self.rate(*api))).collect()
    }

    /// Grants one API `rate` calls a second (0 holds its calls until a grant comes). Takes
    /// effect for callers already waiting; the AIMD factor stays.
    pub fn set_rate(&self, api: A, rate: f64) -> Result<(), ImportError> {
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(ImportError::InvalidConfig(format!(
                "a granted rate must be a number ≥ 0, got {rate}"
            )));
        }
        self.with_lane(api, |lane| lane.grant = rate);
        Ok(())
    }

    /// Grants several APIs their rates at once (see [`Pacer::set_rate`]); on an invalid rate
    /// nothing after it is applied.
    pub fn set_rates(&self, rates: impl IntoIterator<Item = (A, f64)>) -> Result<(), ImportError> {
        for (api, rate) in rates {
            self.set_rate(api, rate)?;
        }
        Ok(())
    }

    /// Every API's rate in force, by operation name (what a budget lease publishes).
    pub fn rates_by_name(&self) -> BTreeMap<String, f64> {
        A::ALL
            .iter()
            .map(|api| (api.name().to_owned(), self.rate(*api)))
            .collect()
    }

    /// Grants the APIs `rates` names (a budget's grant); APIs it does not name keep theirs.
    pub fn set_rates_by_name(&self, rates: &BTreeMap<String, f64>) -> Result<(), ImportError> {
        self.set_rates(
            A::ALL
                .iter()
                .filter_map(|api| Some((*api, *rates.get(api.name())?))),
        )
    }

    /// IoT throttled a call of `api`: its AIMD factor drops (at most once a second).
    pub fn throttled(&self, api: A) {
        let now = self.now();
        self.with_lane(api, |lane| lane.aimd.throttled(now));
    }

    /// Waits until a call of `api` keeps this task within its rate; returns how long it waited.
    pub async fn acquire(&self, api: A) -> Duration {
        let start = Instant::now();
        loop {
            let now = self.now();
            let due = self.with_lane(api, |lane| {
                let rate = lane.rate(now, self.aimd);
                if rate <= 0.0 {
                    return Err(now.saturating_add(RECHECK));
                }
                // The rate is positive and finite here, so it is a valid bucket rate.
                let _ = lane.bucket.set_rate(rate);
                lane.bucket.try_take(now)
            });
            let due = match due {
                None | Some(Ok(())) => return start.elapsed(),
                Some(Err(due)) => due,
            };
            let wake = due.min(now.saturating_add(RECHECK));
            tokio::time::sleep_until(self.origin + wake).await;
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
        fn name(self) -> &'static str {
            match self {
                Reads::Slow => "Slow",
                Reads::Fast => "Fast",
            }
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
        let pacer = Arc::new(Pacer::new(&Quotas::default(), 0.2, 4).unwrap());
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
        let pacer = Pacer::new(&Quotas::default(), 0.2, 1).unwrap();
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
        let pacer = Pacer::new(&Quotas::default(), 0.2, 3).unwrap();
        let mut times = Vec::new();
        for _ in 0..25 {
            pacer.acquire(Api::AttachPolicy).await;
            times.push(Instant::now());
        }
        assert!(max_in_window(&times, Duration::from_secs(1)) <= 5);
        assert!(max_in_window(&times, Duration::from_millis(250)) <= 1);
    }

    #[test]
    fn a_new_rate_spaces_from_the_last_token_taken() {
        let mut b = TokenBucket::new(10.0, 1).unwrap();
        // Never taken: nothing to keep.
        b.set_rate(1.0).unwrap();
        assert_eq!(b.try_take(ms(0)), Ok(()));
        assert_eq!(b.try_take(ms(500)), Err(ms(1000)));
        // Faster: the next token is one new interval after the last, not the old one's end.
        b.set_rate(100.0).unwrap();
        assert_eq!(b.try_take(ms(5)), Err(ms(10)));
        assert_eq!(b.try_take(ms(10)), Ok(()));
        // Slower: no token before a whole new interval after the last, so no burst.
        b.set_rate(2.0).unwrap();
        assert_eq!(b.try_take(ms(100)), Err(ms(510)));
        assert_eq!(b.try_take(ms(510)), Ok(()));
        assert!(b.set_rate(0.0).is_err());
        assert!(b.set_rate(f64::INFINITY).is_err());
        assert_eq!(b.interval(), ms(500), "a refused rate changes nothing");
    }

    #[test]
    fn aimd_decreases_at_most_once_a_second_and_recovers_slowly() {
        let s = Duration::from_secs;
        let mut a = Aimd::default();
        assert_eq!(a.factor(s(100)), 1.0);
        a.throttled(s(0));
        assert!((a.factor(s(0)) - 0.9).abs() < 1e-9);
        // The throttles of calls already in flight are the same signal.
        a.throttled(ms(500));
        assert!((a.factor(ms(500)) - 0.9).abs() < 1e-9);
        a.throttled(ms(1500));
        assert!((a.factor(ms(1500)) - 0.81).abs() < 1e-9);
        // Each 3 s without a throttle adds 0.05, counted from the last throttle.
        assert!((a.factor(ms(4499)) - 0.81).abs() < 1e-9);
        assert!((a.factor(ms(4500)) - 0.86).abs() < 1e-9);
        assert!((a.factor(ms(10500)) - 0.96).abs() < 1e-9);
        assert_eq!(a.factor(s(60)), 1.0);
        // However long the storm, a fifth of the grant stays.
        for t in 0..100 {
            a.throttled(s(100 + t));
        }
        assert!((a.factor(s(201)) - AIMD_FLOOR).abs() < 1e-9);
        assert!((a.factor(s(202)) - (AIMD_FLOOR + AIMD_INCREASE)).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_slow_an_api_and_quiet_time_restores_it() {
        let pacer = Pacer::with_rates(|api: Reads| match api {
            Reads::Slow => 10.0,
            Reads::Fast => 50.0,
        })
        .unwrap();
        pacer.throttled(Reads::Slow);
        assert!((pacer.rate(Reads::Slow) - 9.0).abs() < 1e-9);
        assert_eq!(pacer.grant(Reads::Slow), 10.0);
        assert_eq!(pacer.rate(Reads::Fast), 50.0, "other APIs are not slowed");
        tokio::time::advance(AIMD_INCREASE_EVERY).await;
        assert!((pacer.rate(Reads::Slow) - 9.5).abs() < 1e-9);
        let start = Instant::now();
        pacer.acquire(Reads::Slow).await;
        pacer.acquire(Reads::Slow).await;
        let interval = Duration::from_nanos(105_263_158);
        assert!(start.elapsed() >= interval && start.elapsed() <= interval + TIMER_SLACK);

        let plain = Pacer::with_rates(|_: Reads| 10.0).unwrap().without_aimd();
        plain.throttled(Reads::Slow);
        assert_eq!(plain.rate(Reads::Slow), 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_reaches_callers_already_waiting() {
        let pacer = Arc::new(Pacer::with_rates(|_: Reads| 1.0).unwrap());
        assert_eq!(pacer.acquire(Reads::Slow).await, Duration::ZERO);
        let waiting = {
            let pacer = Arc::clone(&pacer);
            tokio::spawn(async move { pacer.acquire(Reads::Slow).await })
        };
        tokio::time::sleep(ms(100)).await;
        pacer.set_rate(Reads::Slow, 100.0).unwrap();
        // Not the old second: the next look at the rate (within RECHECK) lets it go.
        assert!(waiting.await.unwrap() <= RECHECK);

        // A grant of nothing holds calls (no division by zero) until a rate comes.
        pacer.set_rates([(Reads::Slow, 0.0)]).unwrap();
        assert_eq!(pacer.rate(Reads::Slow), 0.0);
        let held = {
            let pacer = Arc::clone(&pacer);
            tokio::spawn(async move { pacer.acquire(Reads::Slow).await })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!held.is_finished());
        pacer.set_rate(Reads::Slow, 5.0).unwrap();
        let waited = held.await.unwrap();
        assert!(
            waited >= Duration::from_secs(3) && waited <= Duration::from_secs(3) + RECHECK,
            "{waited:?}"
        );
        assert!(pacer.set_rate(Reads::Slow, -1.0).is_err());
        assert!(pacer.set_rate(Reads::Slow, f64::NAN).is_err());
        assert_eq!(pacer.grant(Reads::Slow), 5.0);
    }
}
