//! An in-memory target: what `plan`-style simulations and the engine's test suites run
//! against. It behaves like a well-mannered cloud (every operation takes effect and is
//! read back exactly) unless told to misbehave: fail an operation, lie about weights,
//! or hang (to stand in for a process killed mid-step).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deployer_contract::{RollingUpdate, Side};

use crate::driver::{Driver, DriverError, Shape, Target};

/// What the simulated target looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimState {
    pub stable_release: String,
    pub new_release: Option<String>,
    pub stable_units: u32,
    pub new_units: u32,
    /// Production traffic on the new side, in percent.
    pub new_percent: u8,
    pub test_routed: bool,
    pub promoted: bool,
    /// Every traffic share set, in order.
    pub shifts: Vec<u8>,
    /// Driver operations received, in order.
    pub operations: Vec<String>,
    /// Stable units asked for (`stable_units` counts the healthy ones).
    pub stable_wanted: u32,
    /// At most this many stable units ever become healthy (capacity lost).
    pub stable_capacity: u32,
    /// Stable units become healthy one per health check, not at once.
    pub stable_slow: bool,
}

impl SimState {
    /// The release that serves production traffic, if a single one does.
    pub fn live_release(&self) -> Option<&str> {
        match self.new_percent {
            0 => Some(&self.stable_release),
            100 => self.new_release.as_deref(),
            _ => None,
        }
    }
}

/// A misbehaviour armed on an operation (`"scale"`, `"shift_traffic"`, ...).
#[derive(Clone, Debug)]
pub enum Fault {
    /// Let `skip` calls through, then fail the next `times` calls.
    Fail {
        skip: u32,
        times: u32,
        error: DriverError,
    },
    /// Read weights back as this share instead of the one set.
    MisreportWeight(u8),
    /// Never return (the test then drops the run, as a kill would).
    Hang,
    /// Take effect, then never return: a run killed after the cloud carried out its
    /// call, before the run could journal that it had.
    HangAfter,
}

/// The simulated target and its driver in one: clones share the same target, so the
/// engine's drivers and the test's handle see one state.
#[derive(Clone)]
pub struct SimDriver {
    state: Arc<Mutex<SimState>>,
    faults: Arc<Mutex<Vec<(String, Fault)>>>,
    /// The operation number (0-based, across all operations) at which to hang.
    hang_at: Arc<Mutex<Option<usize>>>,
    /// The operation under way hangs once it has taken effect ([`Fault::HangAfter`]).
    hang_after: Arc<Mutex<bool>>,
    delay: Duration,
    /// Updated in place (one side, rolling updates) instead of side by side.
    in_place: bool,
}

impl SimDriver {
    pub fn new(stable_release: &str, desired: u32) -> Self {
        SimDriver {
            state: Arc::new(Mutex::new(SimState {
                stable_release: stable_release.to_string(),
                new_release: None,
                stable_units: desired,
                new_units: 0,
                new_percent: 0,
                test_routed: false,
                promoted: false,
                shifts: Vec::new(),
                operations: Vec::new(),
                stable_wanted: desired,
                stable_capacity: u32::MAX,
                stable_slow: false,
            })),
            faults: Arc::new(Mutex::new(Vec::new())),
            hang_at: Arc::new(Mutex::new(None)),
            hang_after: Arc::new(Mutex::new(false)),
            delay: Duration::ZERO,
            in_place: false,
        }
    }

    /// A target updated in place (like an ECS service on the ECS controller).
    pub fn in_place(mut self) -> Self {
        self.in_place = true;
        self
    }

    /// Each operation takes this long (to give cancellation something to interrupt).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// At most `units` stable units become healthy, one per health check.
    pub fn limit_stable(&self, units: u32) {
        let mut state = self.state.lock().unwrap();
        state.stable_capacity = units;
        state.stable_slow = true;
    }

    /// Stable units become healthy one per health check.
    pub fn slow_stable(&self) {
        self.state.lock().unwrap().stable_slow = true;
    }

    pub fn state(&self) -> SimState {
        self.state.lock().unwrap().clone()
    }

    pub fn arm(&self, operation: &str, fault: Fault) {
        self.faults
            .lock()
            .unwrap()
            .push((operation.to_string(), fault));
    }

    /// Hang at the `n`-th operation from now on (counting all operations so far).
    pub fn hang_at(&self, n: usize) {
        *self.hang_at.lock().unwrap() = Some(n);
    }

    pub fn disarm(&self) {
        self.faults.lock().unwrap().clear();
        *self.hang_at.lock().unwrap() = None;
    }

    /// The end of an operation that has taken effect: hang here if it was armed with
    /// [`Fault::HangAfter`].
    async fn leave(&self) {
        let hang = std::mem::take(&mut *self.hang_after.lock().unwrap());
        if hang {
            std::future::pending::<()>().await;
        }
    }

    /// Record the operation and apply any armed fault.
    async fn enter(&self, operation: &str) -> Result<Option<u8>, DriverError> {
        let n = {
            let mut state = self.state.lock().unwrap();
            state.operations.push(operation.to_string());
            state.operations.len() - 1
        };
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let hang = *self.hang_at.lock().unwrap() == Some(n);
        let fault = {
            let mut faults = self.faults.lock().unwrap();
            let position = faults.iter().position(|(op, _)| op == operation);
            match position {
                Some(i) => match &mut faults[i].1 {
                    Fault::Fail { skip, .. } if *skip > 0 => {
                        *skip -= 1;
                        None
                    }
                    Fault::Fail { times, error, .. } => {
                        let error = error.clone();
                        *times = times.saturating_sub(1);
                        if *times == 0 {
                            faults.remove(i);
                        }
                        Some(Fault::Fail {
                            skip: 0,
                            times: 0,
                            error,
                        })
                    }
                    other => Some(other.clone()),
                },
                None => None,
            }
        };
        if hang || matches!(fault, Some(Fault::Hang)) {
            std::future::pending::<()>().await;
        }
        if matches!(fault, Some(Fault::HangAfter)) {
            *self.hang_after.lock().unwrap() = true;
        }
        match fault {
            Some(Fault::Fail { error, .. }) => Err(error),
            Some(Fault::MisreportWeight(p)) => Ok(Some(p)),
            _ => Ok(None),
        }
    }
}

impl Driver for SimDriver {
    fn describe(&self) -> String {
        "simulated target".into()
    }

    async fn prepare(&self, release: &str) -> Result<(), DriverError> {
        self.enter("prepare").await?;
        let mut state = self.state.lock().unwrap();
        state.new_release = Some(release.to_string());
        Ok(())
    }

    async fn scale(&self, side: Side, count: u32) -> Result<(), DriverError> {
        self.enter("scale").await?;
        let mut state = self.state.lock().unwrap();
        match side {
            Side::Stable => {
                state.stable_wanted = count;
                state.stable_units = count.min(state.stable_capacity);
                if state.stable_units < count {
                    return Err(DriverError::Failed(format!(
                        "only {} of {count} stable units became healthy",
                        state.stable_units
                    )));
                }
            }
            Side::New => state.new_units = count,
        }
        Ok(())
    }

    async fn request_units(&self, side: Side, count: u32) -> Result<(), DriverError> {
        self.enter("request_units").await?;
        let mut state = self.state.lock().unwrap();
        match side {
            Side::Stable => {
                state.stable_wanted = count;
                if count < state.stable_units || !state.stable_slow {
                    state.stable_units = count.min(state.stable_capacity);
                }
            }
            Side::New => state.new_units = count,
        }
        Ok(())
    }

    async fn healthy_units(&self, side: Side) -> Result<Option<u32>, DriverError> {
        self.enter("healthy_units").await?;
        let mut state = self.state.lock().unwrap();
        Ok(Some(match side {
            Side::Stable => {
                let reachable = state.stable_wanted.min(state.stable_capacity);
                if state.stable_units < reachable {
                    state.stable_units += 1;
                }
                state.stable_units
            }
            Side::New => state.new_units,
        }))
    }

    async fn traffic_share(&self) -> Result<Option<u8>, DriverError> {
        // Not an operation of its own (no fault is injected here): a read.
        Ok(Some(self.state.lock().unwrap().new_percent))
    }

    async fn shift_traffic(&self, new_percent: u8) -> Result<u8, DriverError> {
        let misreport = self.enter("shift_traffic").await?;
        {
            let mut state = self.state.lock().unwrap();
            state.new_percent = new_percent;
            state.shifts.push(new_percent);
        }
        self.leave().await;
        Ok(misreport.unwrap_or(new_percent))
    }

    async fn route_test_traffic(&self) -> Result<(), DriverError> {
        self.enter("route_test_traffic").await?;
        self.state.lock().unwrap().test_routed = true;
        Ok(())
    }

    async fn rolling_update(
        &self,
        release: &str,
        _update: &RollingUpdate,
    ) -> Result<(), DriverError> {
        self.enter("rolling_update").await?;
        let mut state = self.state.lock().unwrap();
        // In place: the service now runs `release` on all its units.
        state.stable_release = release.to_string();
        Ok(())
    }

    async fn promote(&self) -> Result<(), DriverError> {
        self.enter("promote").await?;
        self.state.lock().unwrap().promoted = true;
        self.leave().await;
        Ok(())
    }

    async fn finalize(&self) -> Result<(), DriverError> {
        self.enter("finalize").await?;
        let mut state = self.state.lock().unwrap();
        // The new side becomes the stable one.
        if let Some(new) = state.new_release.take() {
            state.stable_release = new;
        }
        state.stable_units = state.new_units;
        state.new_units = 0;
        state.new_percent = 0;
        state.promoted = false;
        state.test_routed = false;
        Ok(())
    }

    async fn discard_new(&self) -> Result<(), DriverError> {
        self.enter("discard_new").await?;
        let mut state = self.state.lock().unwrap();
        state.new_release = None;
        state.test_routed = false;
        state.promoted = false;
        Ok(())
    }
}

impl Target for SimDriver {
    type Driver = SimDriver;

    async fn inspect(&self) -> Result<Shape, DriverError> {
        let state = self.state();
        Ok(Shape {
            primary_release: state.stable_release,
            side_by_side: !self.in_place,
            live_units: None,
            scaling: None,
            blocked: None,
            serves_on_demand: false,
        })
    }

    fn driver(&self, _: bool, _: &str, _: &str, _: u32) -> Result<SimDriver, DriverError> {
        Ok(self.clone())
    }

    fn same_release(&self, a: &str, b: &str) -> bool {
        a == b
    }
}
