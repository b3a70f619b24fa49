//! The epoch ticker, and the clock that plugin time limits are measured on.
//!
//! wasmtime interrupts a guest only at epoch checks, so a thread advances the engine's
//! epoch every [`TICK`] while any call runs. The same thread notices when the whole
//! process was not running: a 2 ms sleep that took seconds means the process was
//! stopped (SIGSTOP from a CI runner being suspended, a debugger, a laptop lid), and that
//! time is added to [`Ticker`]'s stopped total. A call's [`CallClock`] subtracts what
//! was stopped during the call, so a time limit counts only time the process ran: a
//! deployer continued after a pause goes on with its plugin call instead of finding it
//! over time and failing a deployment that nothing was wrong with.
//!
//! A hostile plugin gains nothing from this: it cannot stop the process, and a gap only
//! counts when the ticker thread itself did not run, which a guest on another thread
//! cannot cause beyond ordinary scheduling noise (gaps under [`STOPPED_GAP`] count as
//! running time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How often the engine's epoch advances while a plugin call is running; the deadline
/// of a call is checked at this granularity.
pub(crate) const TICK: Duration = Duration::from_millis(2);

/// A tick that took longer than this means the process was not running for most of it.
const STOPPED_GAP: Duration = Duration::from_millis(250);

/// The part of a tick's measured length that the process spent stopped.
fn stopped_part(measured: Duration) -> Duration {
    if measured > STOPPED_GAP {
        measured - TICK
    } else {
        Duration::ZERO
    }
}

/// Advances the engine's epoch every [`TICK`] while at least one call runs, and sleeps
/// otherwise, so an idle host (a deployment baking for ten minutes) costs no CPU.
pub(crate) struct Ticker {
    state: Mutex<(usize, bool)>,
    wake: Condvar,
    /// Nanoseconds the process was seen stopped while calls ran.
    stopped: AtomicU64,
    /// Ticks so far: a clock that finds its limit passed waits for the next tick, so a
    /// stop the ticker has not accounted for yet is not mistaken for running time.
    ticks: AtomicU64,
}

/// A call in progress; the ticker runs while one exists.
pub(crate) struct Running(Arc<Ticker>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().0 -= 1;
    }
}

impl Running {
    /// A clock started now, counting only time the process runs.
    pub(crate) fn clock(&self) -> CallClock {
        CallClock {
            ticker: self.0.clone(),
            started: Instant::now(),
            stopped_before: self.0.stopped(),
        }
    }
}

/// Time since a call started, less the time the process was stopped.
#[derive(Clone)]
pub(crate) struct CallClock {
    ticker: Arc<Ticker>,
    started: Instant,
    stopped_before: Duration,
}

impl CallClock {
    pub(crate) fn elapsed(&self) -> Duration {
        let stopped = self.ticker.stopped().saturating_sub(self.stopped_before);
        self.started.elapsed().saturating_sub(stopped)
    }

    /// Resolves once `limit` of running time has passed.
    pub(crate) async fn expired(&self, limit: Duration) {
        loop {
            let left = limit.saturating_sub(self.elapsed());
            if !left.is_zero() {
                tokio::time::sleep(left).await;
                continue;
            }
            // After a stop, this task and the ticker wake together; let the ticker
            // account for the stop before believing the limit passed.
            let seen = self.ticker.ticks.load(Ordering::Acquire);
            let wait_until = Instant::now() + STOPPED_GAP;
            while self.ticker.ticks.load(Ordering::Acquire) < seen + 2
                && Instant::now() < wait_until
            {
                tokio::time::sleep(TICK).await;
            }
            if self.elapsed() >= limit {
                return;
            }
        }
    }
}

impl Ticker {
    pub(crate) fn start(engine: Engine) -> Arc<Ticker> {
        let ticker = Arc::new(Ticker {
            state: Mutex::new((0, false)),
            wake: Condvar::new(),
            stopped: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
        });
        let me = ticker.clone();
        std::thread::Builder::new()
            .name("deployer-epoch".into())
            .spawn(move || {
                loop {
                    {
                        let mut state = me.state.lock().unwrap();
                        while state.0 == 0 && !state.1 {
                            state = me.wake.wait(state).unwrap();
                        }
                        if state.1 {
                            return;
                        }
                    }
                    let before = Instant::now();
                    std::thread::sleep(TICK);
                    let stopped = stopped_part(before.elapsed());
                    if !stopped.is_zero() {
                        me.stopped.fetch_add(
                            u64::try_from(stopped.as_nanos()).unwrap_or(u64::MAX),
                            Ordering::AcqRel,
                        );
                    }
                    // Accounted before the epoch moves: the deadline check it triggers
                    // already sees the stop.
                    me.ticks.fetch_add(1, Ordering::AcqRel);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        ticker
    }

    fn stopped(&self) -> Duration {
        Duration::from_nanos(self.stopped.load(Ordering::Acquire))
    }

    pub(crate) fn running(self: &Arc<Self>) -> Running {
        self.state.lock().unwrap().0 += 1;
        self.wake.notify_one();
        Running(self.clone())
    }

    pub(crate) fn stop(&self) {
        self.state.lock().unwrap().1 = true;
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tick_far_longer_than_scheduling_noise_counts_as_stopped() {
        assert_eq!(stopped_part(TICK), Duration::ZERO);
        assert_eq!(stopped_part(Duration::from_millis(200)), Duration::ZERO);
        assert_eq!(
            stopped_part(Duration::from_millis(1_070)),
            Duration::from_millis(1_068)
        );
    }

    #[tokio::test]
    async fn a_call_clock_runs_with_the_process_and_expires_at_its_limit() {
        let ticker = Ticker::start(Engine::default());
        let running = ticker.running();
        let clock = running.clock();
        let started = Instant::now();
        clock.expired(Duration::from_millis(30)).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(clock.elapsed() >= Duration::from_millis(30));
        drop(running);
        ticker.stop();
    }
}
