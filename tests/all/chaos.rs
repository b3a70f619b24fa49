//! Chaos (issue #15): seeded random deployments of the real binary against moto, each
//! run SIGKILLed or SIGSTOPped at a random moment and followed by a random next command;
//! after every iteration the world and the journal must agree and be safe.
//!
//! One moto world serves every iteration, each continuing from where the last one left
//! it (releases web:2, web:3, ... keep coming, as in production). Per iteration: a
//! strategy (canary, blue-green, rolling in batches — all three run on task sets), a
//! release that is good, fails its smoke test, or never gets healthy, started as
//! `deployer run`; after a random delay or a random number of journal records it is
//! SIGKILLed, or SIGSTOPped and later SIGCONTed or SIGKILLed while the next command runs.
//! The next command is a `run` of a new release, the same release again (a CI retry), a
//! `rollback`, or two concurrent `run`s. A kill with a command refused at the lock (the
//! stopped run held it) is followed by that command again, as CI would retry it. In some
//! iterations the next command is SIGKILLed too, then followed by `rollback` or itself.
//!
//! After every iteration: traffic 100% on one side, which has the service's full desired
//! count of healthy targets and runs a good release as the one task set; `status` exits 0
//! and says `idle` and that release; `history` exits 0 (the journals read). No command
//! hangs, panics or reports a failed rollback.
//!
//! Both state backends: the local one (an OS lock a stopped run keeps) and, in a second
//! test with fewer iterations, S3 + DynamoDB with a 5 s lease, where a stopped run loses
//! the service when its lease runs out: the next command waits that out and takes over,
//! and a run stopped past its lease is continued only after the next command finished,
//! when it must change nothing (traffic, task sets, state bucket).
//!
//! `DEPLOYER_CHAOS_SEED` picks the seed (decimal or 0x-hex), `DEPLOYER_CHAOS_ITERATIONS`
//! (`DEPLOYER_CHAOS_AWS_ITERATIONS` for the `aws` backend) the number of iterations;
//! `DEPLOYER_CHAOS_TRACE` prints every iteration's sequence. The seed fixes every choice; the moments of the kills are
//! wall-clock delays and journal lengths, so a failure may need a few runs of its seed to
//! come back.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use deployer_tests::support::cli::command_at;
use deployer_tests::support::env::EcsEnv;
use deployer_tests::support::{App, ecs_service};

const DEFAULT_SEED: u64 = 0x15_C4A0_5EED;
const DEFAULT_ITERATIONS: u32 = 70;
/// With the `aws` backend (each interrupted iteration waits out a lease).
const DEFAULT_AWS_ITERATIONS: u32 = 8;
/// The desired count of `web` in [`EcsEnv::task_sets`].
const DESIRED: usize = 4;
const STEPS: &str = r#"[{ weight = 10, bake = "300ms" }, { weight = 50 }]"#;
/// Longest an iteration's processes may take, all together, before it counts as a hang.
const HANG: Duration = Duration::from_secs(120);
/// New releases an iteration may use: the killed run's and two concurrent ones.
const RELEASES_PER_ITERATION: u32 = 3;

/// splitmix64: small, seedable, good enough to pick scenarios.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// One of `choices`, each as likely as its weight.
    fn pick<T: Copy>(&mut self, choices: &[(u64, T)]) -> T {
        let total: u64 = choices.iter().map(|(w, _)| w).sum();
        let mut n = self.next() % total;
        for &(weight, choice) in choices {
            if n < weight {
                return choice;
            }
            n -= weight;
        }
        unreachable!()
    }
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    Some(match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("{name}={text}")),
        None => text.parse().unwrap_or_else(|_| panic!("{name}={text}")),
    })
}

/// What a release does when deployed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Good,
    /// Its smoke test (the HTTP gate) fails: deployed with the failing app's config.
    SmokeFails,
    /// Its tasks never get healthy (the stand-in ECS agent never registers them).
    NeverHealthy,
}

/// When the first run is interrupted.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// This long after it started.
    Delay(u64),
    /// Once the journals have this many more records.
    Records(usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Interrupt {
    /// SIGKILL, then the next command.
    Kill,
    /// SIGSTOP; the next command starts; then SIGCONT.
    StopCont,
    /// SIGSTOP; the next command starts; then SIGKILL (and a command refused at the lock
    /// meanwhile is run again).
    StopKill,
}

/// What follows a next command that was SIGKILLed too.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AfterKill {
    Rollback,
    /// The same command again (a CI retry).
    Again,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Next {
    RunNew,
    /// The killed run's release again, as a retried CI job would.
    RunSame,
    Rollback,
    TwoRuns,
}

const STRATEGIES: [(u64, &str); 3] = [(1, "canary"), (1, "blue-green"), (1, "rolling")];

/// Where the journals and the service's lock live.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    /// Files under `.deployer`, the lock an OS `flock` held while the process lives.
    Local,
    /// Journals in S3, the lock a DynamoDB lease of [`LEASE`]: a stopped run keeps it only
    /// until it expires, so the next command waits it out and takes over.
    Aws,
}

/// The `aws` backend's lease (`state.lease`): the shortest the config allows.
const LEASE: &str = "5s";
/// A stop this long outlasts the lease: expiry is judged in whole seconds, and the
/// holder's last renewal may have come just before the stop.
const PAST_THE_LEASE: u64 = 6_500;
/// The journal keys in S3 (the `aws` backend).
const JOURNAL_PREFIX: &str = "shop/services/web/deployments/";

/// The world and what the test knows about it.
struct Chaos {
    env: EcsEnv,
    backend: Backend,
    seed: u64,
    kinds: Vec<Kind>,
    logs: PathBuf,
    /// Processes started so far (for unique log names).
    started: usize,
    /// URLs of the app that passes the smoke test and of the one that fails it.
    good: String,
    bad: String,
}

/// One started `deployer` process, its output going to files.
struct Proc {
    label: String,
    child: tokio::process::Child,
    out: PathBuf,
    err: PathBuf,
    /// Killed by the test (its exit code means nothing).
    killed: bool,
}

/// The start of an iteration's journal records.
struct Since {
    time: std::time::SystemTime,
    /// Journal objects in S3 before it (the `aws` backend).
    keys: usize,
}

/// The world as a run that lost its lease finds it.
#[derive(Debug, PartialEq)]
struct Snapshot {
    weights: (u8, u8),
    sets: Vec<(String, String, String)>,
    desired: i32,
    keys: Vec<String>,
}

/// A process that exited: its label, exit code (`None`: a signal ended it) and output.
struct Done {
    label: String,
    code: Option<i32>,
    killed: bool,
    out: String,
    err: String,
}

impl Done {
    fn refused_at_lock(&self) -> bool {
        self.code == Some(4) && self.err.contains("is already being deployed by")
    }

    /// Stopped by its fence: another run took its lease (the `aws` backend).
    fn superseded(&self) -> bool {
        self.code == Some(4) && self.err.contains("another run holds the service now")
    }
}

/// What happened in one iteration, for the failure message.
struct Iteration {
    seed: u64,
    backend: Backend,
    number: u32,
    trace: String,
    done: Vec<Done>,
}

impl Iteration {
    fn note(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.trace, "  {}", line.as_ref());
    }

    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        let mut outputs = String::new();
        for d in &self.done {
            let _ = write!(
                outputs,
                "--- {} (exit {:?}{}) stdout:\n{}--- stderr:\n{}",
                d.label,
                d.code,
                if d.killed { ", killed by the test" } else { "" },
                d.out,
                d.err
            );
        }
        panic!(
            "chaos seed {seed:#x} ({backend:?} backend) iteration {n}: {what}\n\
             rerun: DEPLOYER_CHAOS_SEED={seed:#x} cargo test -p deployer-tests --test all -- {test}\n\
             sequence:\n{trace}{outputs}",
            seed = self.seed,
            backend = self.backend,
            test = match self.backend {
                Backend::Local => "chaos::seeded_kills",
                Backend::Aws => "chaos::with_the_aws_backend",
            },
            n = self.number,
            trace = self.trace,
        )
    }

    #[track_caller]
    fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(&what());
        }
    }
}

impl Chaos {
    fn release(&self, revision: u32) -> (String, Kind) {
        (format!("web:{revision}"), self.kinds[revision as usize])
    }

    fn config_for(&self, kind: Kind) -> PathBuf {
        let name = match kind {
            Kind::SmokeFails => "failing.toml",
            _ => "deployer.toml",
        };
        self.env.dir.path().join(name)
    }

    fn spawn(&mut self, it: &mut Iteration, label: String, config: &Path, args: &[&str]) -> Proc {
        self.started += 1;
        let out = self.logs.join(format!("{}.out", self.started));
        let err = self.logs.join(format!("{}.err", self.started));
        let child = command_at(config, args)
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
            .spawn()
            .unwrap();
        it.note(format!("start {label}: deployer {}", args.join(" ")));
        Proc {
            label,
            child,
            out,
            err,
            killed: false,
        }
    }

    /// `deployer run STRATEGY` of `revision` with the config its kind needs.
    fn spawn_run(
        &mut self,
        it: &mut Iteration,
        label: &str,
        strategy: &str,
        revision: u32,
    ) -> Proc {
        let (release, kind) = self.release(revision);
        let config = self.config_for(kind);
        let label = format!("{label} ({strategy} {release}, {kind:?})");
        self.spawn(
            it,
            label,
            &config,
            &["run", strategy, "--service", "web", "--release", &release],
        )
    }

    /// Where the iteration's journal records start: now, and how many there are.
    async fn since(&self) -> Since {
        Since {
            time: std::time::SystemTime::now(),
            keys: match self.backend {
                Backend::Local => 0,
                Backend::Aws => self.journal_keys().await.len(),
            },
        }
    }

    /// Every journal record's key in S3 (the `aws` backend).
    async fn journal_keys(&self) -> Vec<String> {
        // Only under the journals' prefix: the bucket grows with every iteration.
        let mut keys = Vec::new();
        let mut pages = self
            .env
            .clients
            .s3
            .list_objects_v2()
            .bucket("deployer-state")
            .prefix(JOURNAL_PREFIX)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            keys.extend(
                page.unwrap()
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        keys.sort();
        keys
    }

    /// Records in the service's journals written since `since` (only the ones the
    /// iteration wrote: it starts with every earlier deployment finished).
    async fn journal_records(&self, since: &Since) -> usize {
        if self.backend == Backend::Aws {
            // One object per record, never rewritten.
            return self.journal_keys().await.len().saturating_sub(since.keys);
        }
        let dir = self
            .env
            .dir
            .path()
            .join(".deployer/services/web/deployments");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since.time)
            })
            .map(|e| {
                std::fs::read(e.path()).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
            })
            .sum()
    }

    /// The owner of the service's lease in DynamoDB (`deployment/host/pid`), if any.
    async fn lease_owner(&self) -> Option<String> {
        let out = self
            .env
            .clients
            .dynamodb
            .get_item()
            .table_name("deployer-locks")
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S("shop/web".into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        out.item()
            .and_then(|i| i.get("owner"))
            .and_then(|v| v.as_s().ok())
            .cloned()
    }

    /// What a run that lost its lease must leave alone: the traffic, the task sets and
    /// every object in the state bucket.
    async fn snapshot(&self) -> Snapshot {
        let (sets, desired) = task_sets(&self.env).await;
        let mut keys = self.env.s3_keys().await;
        keys.sort();
        Snapshot {
            weights: self.env.weights().await,
            sets,
            desired,
            keys,
        }
    }
}

fn signal(proc: &Proc, sig: libc::c_int) {
    let pid = proc.child.id().expect("the process has not been reaped") as libc::pid_t;
    // SAFETY: a plain kill(2) of our own child, which has not been reaped.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Wait for `proc` until `deadline`; a hang fails the iteration.
async fn finish(it: &mut Iteration, mut proc: Proc, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let status = match tokio::time::timeout(left, proc.child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = proc.child.start_kill();
            let _ = proc.child.wait().await;
            let out = std::fs::read_to_string(&proc.out).unwrap_or_default();
            let err = std::fs::read_to_string(&proc.err).unwrap_or_default();
            it.done.push(Done {
                label: proc.label.clone(),
                code: None,
                killed: true,
                out,
                err,
            });
            it.fail(&format!(
                "{} hung (still running after {HANG:?})",
                proc.label
            ));
        }
    };
    let code = status.code();
    it.note(format!(
        "{} exited: {}",
        proc.label,
        match code {
            Some(c) => format!("code {c}"),
            None if proc.killed => "killed by the test".to_string(),
            None => format!("by a signal ({status})"),
        }
    ));
    it.done.push(Done {
        label: proc.label,
        code,
        killed: proc.killed,
        out: std::fs::read_to_string(&proc.out).unwrap_or_default(),
        err: std::fs::read_to_string(&proc.err).unwrap_or_default(),
    });
}

async fn sigkill(it: &mut Iteration, mut proc: Proc, deadline: Instant) {
    proc.child.start_kill().unwrap();
    proc.killed = true;
    finish(it, proc, deadline).await;
}

/// The one task set of `web`: its release and target group, and how many there are.
async fn task_sets(env: &EcsEnv) -> (Vec<(String, String, String)>, i32) {
    let service = ecs_service(&env.clients, "web").await.unwrap().unwrap();
    let sets = service
        .task_sets()
        .iter()
        .map(|t| {
            (
                t.task_definition()
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                t.status().unwrap_or_default().to_string(),
                t.load_balancers()
                    .first()
                    .and_then(|l| l.target_group_arn())
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    (sets, service.desired_count())
}

/// Healthy targets registered in `tg`.
async fn healthy(env: &EcsEnv, tg: &str) -> usize {
    env.clients
        .elb
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .unwrap()
        .target_health_descriptions()
        .iter()
        .filter(|d| {
            d.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy)
        })
        .count()
}

/// `deployer ARGS` on the good config, waited for: (exit code, stdout, stderr).
async fn deployer(env: &EcsEnv, args: &[&str]) -> (Option<i32>, String, String) {
    let out = command_at(&env.dir.path().join("deployer.toml"), args)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Chaos {
    async fn iteration(&mut self, rng: &mut Rng, number: u32, next_revision: &mut u32) -> String {
        let mut it = Iteration {
            seed: self.seed,
            backend: self.backend,
            number,
            trace: String::new(),
            done: Vec::new(),
        };
        let mut fresh = || {
            *next_revision += 1;
            *next_revision - 1
        };
        // Every choice first, from the seed alone.
        let strategy = rng.pick(&STRATEGIES);
        let first_revision = fresh();
        let resume = rng.range(0, 3) == 0;
        // Within the run's length as measured on a CI-sized machine (a slower one
        // interrupts more runs; a faster one lets more finish first).
        let (records, ms) = match (self.kinds[first_revision as usize], strategy) {
            (Kind::Good, "canary") => (37, 1400),
            (Kind::Good, "rolling") => (29, 1000),
            (Kind::Good, _) => (25, 900),
            (Kind::SmokeFails, _) => (17, 450),
            (Kind::NeverHealthy, _) => (13, 5500),
        };
        let trigger = if rng.range(0, 1) == 0 {
            Trigger::Delay(rng.range(0, ms))
        } else {
            Trigger::Records(rng.range(1, records) as usize)
        };
        let interrupt = rng.pick(&[
            (2, Interrupt::Kill),
            (1, Interrupt::StopCont),
            (1, Interrupt::StopKill),
        ]);
        let next = rng.pick(&[
            (3, Next::RunNew),
            (1, Next::RunSame),
            (2, Next::Rollback),
            (2, Next::TwoRuns),
        ]);
        let next_runs: Vec<(&str, u32)> = match next {
            Next::RunNew => vec![(rng.pick(&STRATEGIES), fresh())],
            Next::RunSame => vec![(strategy, first_revision)],
            Next::Rollback => vec![],
            Next::TwoRuns => vec![
                (rng.pick(&STRATEGIES), fresh()),
                (rng.pick(&STRATEGIES), fresh()),
            ],
        };
        let stopped_for = Duration::from_millis(match self.backend {
            Backend::Local => rng.range(0, 1500),
            // Within the lease, around its end (the holder renews after its last sure
            // moment, or the waiter takes over first), and well past it.
            Backend::Aws => match rng.range(0, 3) {
                0 => rng.range(0, 1500),
                1 => rng.range(1500, PAST_THE_LEASE),
                _ => rng.range(PAST_THE_LEASE, 9000),
            },
        });
        // Stopped past the lease: the next command takes over and finishes while the
        // stopped run stays stopped; continued, that run must change nothing.
        let past_the_lease = self.backend == Backend::Aws
            && interrupt == Interrupt::StopCont
            && stopped_for >= Duration::from_millis(PAST_THE_LEASE);
        // Sometimes the next command is SIGKILLed too (a second cancel, say while it
        // recovers the first run), then followed by `rollback` or by itself again.
        let kill_next = (rng.range(0, 2) == 0).then(|| Duration::from_millis(rng.range(0, 1500)));
        let after_kill_next = rng.pick(&[(1, AfterKill::Rollback), (1, AfterKill::Again)]);

        let on_interrupted = if resume { "resume" } else { "rollback" };
        it.note(format!("on-interrupted = {on_interrupted}"));
        self.write_configs(on_interrupted);
        let deadline = Instant::now() + HANG;

        // The run to interrupt.
        let since = self.since().await;
        let started = Instant::now();
        let mut first = self.spawn_run(&mut it, "first", strategy, first_revision);
        let exited = loop {
            if let Some(status) = first.child.try_wait().unwrap() {
                break Some(status);
            }
            let fire = match trigger {
                Trigger::Delay(ms) => started.elapsed() >= Duration::from_millis(ms),
                Trigger::Records(n) => self.journal_records(&since).await >= n,
            };
            if fire {
                break None;
            }
            if Instant::now() > deadline {
                sigkill(&mut it, first, deadline + Duration::from_secs(5)).await;
                it.fail("the first run hung before its interruption");
            }
            // S3 listings are slower than reading a directory.
            tokio::time::sleep(Duration::from_millis(match self.backend {
                Backend::Local => 5,
                Backend::Aws => 20,
            }))
            .await;
        };
        let (first_ms, first_records) = (
            started.elapsed().as_millis(),
            self.journal_records(&since).await,
        );
        let mut stopped = None;
        // Whether the stopped run held the service's lease (the `aws` backend).
        let mut held_lease = false;
        match exited {
            Some(_) => {
                it.note(format!(
                    "first exited by itself before {trigger:?} ({} ms, {} journal records)",
                    started.elapsed().as_millis(),
                    self.journal_records(&since).await
                ));
                finish(&mut it, first, deadline).await;
            }
            None => {
                let records = self.journal_records(&since).await;
                let at = format!(
                    "{trigger:?}: after {} ms, {records} new journal record(s), weights {:?}",
                    started.elapsed().as_millis(),
                    self.env.weights().await
                );
                match interrupt {
                    Interrupt::Kill => {
                        it.note(format!("SIGKILL first at {at}"));
                        sigkill(&mut it, first, deadline).await;
                    }
                    Interrupt::StopCont | Interrupt::StopKill => {
                        it.note(format!("SIGSTOP first at {at}"));
                        signal(&first, libc::SIGSTOP);
                        if self.backend == Backend::Aws {
                            // A request it sent just before the stop lands first.
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            let pid = first.child.id().unwrap();
                            let owner = self.lease_owner().await;
                            held_lease = owner
                                .as_deref()
                                .is_some_and(|o| o.ends_with(&format!("/{pid}")));
                            it.note(format!(
                                "the lease's owner: {owner:?} (first is pid {pid}: held {held_lease})"
                            ));
                        }
                        stopped = Some(first);
                    }
                }
            }
        }

        // The next command.
        let start_next = |this: &mut Chaos, it: &mut Iteration| -> Vec<Proc> {
            if next == Next::Rollback {
                let config = this.env.dir.path().join("deployer.toml");
                vec![this.spawn(
                    it,
                    "rollback".to_string(),
                    &config,
                    &["rollback", "--service", "web"],
                )]
            } else {
                next_runs
                    .iter()
                    .enumerate()
                    .map(|(i, &(s, r))| this.spawn_run(it, &format!("next{}", i + 1), s, r))
                    .collect()
            }
        };
        let mut procs = start_next(self, &mut it);
        let mut killed_next = None;
        if let Some(after) = kill_next.filter(|_| stopped.is_none()) {
            tokio::time::sleep(after).await;
            let mut victim = procs.remove(0);
            if victim.child.try_wait().unwrap().is_none() {
                it.note(format!(
                    "SIGKILL {} after {} ms",
                    victim.label,
                    after.as_millis()
                ));
                sigkill(&mut it, victim, deadline).await;
                killed_next = Some(after);
            } else {
                finish(&mut it, victim, deadline).await;
            }
        }
        if let Some(stopped) = stopped.take_if(|_| past_the_lease) {
            // The next command waits the lease out, takes over and finishes while the
            // first run stays stopped; continued, the first run must notice at its
            // fence and change nothing: no traffic, no task set, no journal object.
            for proc in procs.drain(..) {
                finish(&mut it, proc, deadline).await;
            }
            let before = self.snapshot().await;
            it.note(format!(
                "SIGCONT first after the next command finished ({} ms)",
                started.elapsed().as_millis()
            ));
            signal(&stopped, libc::SIGCONT);
            finish(&mut it, stopped, deadline).await;
            let first_done = it.done.last().unwrap();
            if held_lease {
                let after = self.snapshot().await;
                it.check(after == before, || {
                    format!(
                        "first lost its lease while stopped, yet changed the world when continued:\n  \
                         before {before:?}\n  after  {after:?}"
                    )
                });
                it.check(
                    it.done
                        .iter()
                        .any(|d| d.label != first_done.label && d.err.contains("waiting up to")),
                    || "no next command waited the stopped run's lease out".to_string(),
                );
            }
        }
        if let Some(stopped) = stopped.take() {
            tokio::time::sleep(stopped_for).await;
            if interrupt == Interrupt::StopCont {
                it.note(format!(
                    "SIGCONT first after {} ms",
                    stopped_for.as_millis()
                ));
                signal(&stopped, libc::SIGCONT);
                finish(&mut it, stopped, deadline).await;
            } else {
                it.note(format!(
                    "SIGKILL stopped first after {} ms",
                    stopped_for.as_millis()
                ));
                sigkill(&mut it, stopped, deadline).await;
            }
        }
        let from = it.done.len();
        for proc in procs {
            finish(&mut it, proc, deadline).await;
        }
        // A command refused while the killed run held the lock is run again (CI retry).
        if interrupt == Interrupt::StopKill && it.done[from..].iter().any(Done::refused_at_lock) {
            it.note("a next command was refused at the lock: run it again");
            for proc in start_next(self, &mut it) {
                finish(&mut it, proc, deadline).await;
            }
        }

        if killed_next.is_some() {
            let procs = match after_kill_next {
                AfterKill::Rollback => {
                    let config = self.env.dir.path().join("deployer.toml");
                    vec![self.spawn(
                        &mut it,
                        "rollback after the kill".to_string(),
                        &config,
                        &["rollback", "--service", "web"],
                    )]
                }
                AfterKill::Again => start_next(self, &mut it),
            };
            for proc in procs {
                finish(&mut it, proc, deadline).await;
            }
        }

        self.check_exits(
            &it,
            (exited.is_some() || interrupt == Interrupt::Kill) && killed_next.is_none(),
            next,
            &next_runs,
        )
        .await;
        let live = self.check_world(&it).await;
        let interrupted = if exited.is_some() {
            format!(
                "not interrupted (done first: {} ms, {} records)",
                first_ms, first_records
            )
        } else if interrupt == Interrupt::Kill {
            format!("{interrupt:?} at {trigger:?}")
        } else if past_the_lease {
            format!(
                "{interrupt:?} at {trigger:?} past the lease (held it: {held_lease}), continued after the next command"
            )
        } else {
            format!(
                "{interrupt:?} at {trigger:?} for {} ms",
                stopped_for.as_millis()
            )
        };
        if std::env::var_os("DEPLOYER_CHAOS_TRACE").is_some() {
            eprintln!("{}", it.trace);
        }
        let exits: Vec<String> = it
            .done
            .iter()
            .map(|d| match d.code {
                _ if d.killed => "killed".to_string(),
                Some(c) => c.to_string(),
                None => "signal".to_string(),
            })
            .collect();
        let then = match killed_next {
            Some(after) => format!(
                ", SIGKILLed after {} ms, then {after_kill_next:?}",
                after.as_millis()
            ),
            None => String::new(),
        };
        format!(
            "{strategy} web:{first_revision} ({:?}, {on_interrupted}) {interrupted}, then {next:?} {:?}{then}; exits {}; live {live}",
            self.kinds[first_revision as usize],
            next_runs
                .iter()
                .map(|&(s, r)| format!("{s} web:{r} ({:?})", self.kinds[r as usize]))
                .collect::<Vec<_>>(),
            exits.join(" "),
        )
    }

    fn write_configs(&self, on_interrupted: &str) {
        for (file, url) in [("deployer.toml", &self.good), ("failing.toml", &self.bad)] {
            let mut config = self.env.task_sets(url, STEPS).service("web", |s| {
                s.settings(|t| t.str("on-interrupted", on_interrupted))
                    .strategy("rolling", |p| p.int("batch-size", 2))
            });
            if self.backend == Backend::Aws {
                config = config
                    .aws_state("deployer-state", "deployer-locks", "shop/")
                    .lease(LEASE);
            }
            std::fs::write(self.env.dir.path().join(file), config.render()).unwrap();
        }
    }

    /// Every process ended as a command may: no panic, no signal it was not sent, no
    /// failed rollback, bad input or error other than a refusal at the lock (or a
    /// `rollback` with nothing to roll back). With nothing racing it (`alone`), a run
    /// ends as its release deserves.
    async fn check_exits(&self, it: &Iteration, alone: bool, next: Next, runs: &[(&str, u32)]) {
        for d in &it.done {
            it.check(
                !d.err.contains("panicked") && !d.out.contains("panicked"),
                || format!("{} panicked", d.label),
            );
            if d.killed {
                continue;
            }
            let fine = match d.code {
                Some(0 | 1) => true,
                Some(4) => {
                    d.refused_at_lock()
                        || (self.backend == Backend::Aws
                            && d.label.starts_with("first")
                            && d.superseded())
                        || (d.label.starts_with("rollback")
                            && d.err.contains("has no promoted deployment to roll back"))
                }
                _ => false,
            };
            it.check(fine, || {
                format!(
                    "{} ended with {:?}, which no command should",
                    d.label, d.code
                )
            });
        }
        if !alone || next == Next::TwoRuns {
            return;
        }
        let last = it.done.last().unwrap();
        if let [(_, revision)] = runs {
            let (release, kind) = self.release(*revision);
            let expected = if kind == Kind::Good { 0 } else { 1 };
            it.check(last.code == Some(expected), || {
                format!(
                    "{} ran alone and exited {:?}, not {expected}, for a {kind:?} release {release}",
                    last.label, last.code
                )
            });
            if kind == Kind::Good {
                let (sets, _) = task_sets(&self.env).await;
                it.check(
                    sets.iter().any(|s| s.0 == release && s.1 == "PRIMARY"),
                    || {
                        format!(
                            "{} exited 0 but {release} is not the primary task set: {sets:?}",
                            last.label
                        )
                    },
                );
            }
        } else if next == Next::Rollback {
            it.check(matches!(last.code, Some(0 | 4)), || {
                format!("rollback ran alone and exited {:?}", last.code)
            });
        }
    }

    /// The invariants; returns the live release.
    async fn check_world(&self, it: &Iteration) -> String {
        let weights = self.env.weights().await;
        it.check(weights == (100, 0) || weights == (0, 100), || {
            format!("traffic is split {weights:?} (blue, green) after every process exited")
        });
        let world = &self.env.world;
        let live_tg = if weights.0 == 100 {
            &world.blue
        } else {
            &world.green
        };
        let (sets, desired) = task_sets(&self.env).await;
        it.check(desired as usize == DESIRED, || {
            format!("the service's desired count is {desired}, not {DESIRED}")
        });
        it.check(sets.len() == 1, || {
            format!("{} task sets are left, not one: {sets:?}", sets.len())
        });
        let (live, status, tg) = &sets[0];
        it.check(status == "PRIMARY" && tg == live_tg, || {
            format!(
                "the task set {live} ({status}) is behind {tg}, but traffic is on {live_tg} ({weights:?})"
            )
        });
        let revision: usize = live.strip_prefix("web:").unwrap().parse().unwrap();
        it.check(self.kinds[revision] == Kind::Good, || {
            format!("{live}, a {:?} release, is live", self.kinds[revision])
        });
        // The stand-in agent registers targets every 50 ms: give it a moment.
        let started = Instant::now();
        let mut count = healthy(&self.env, live_tg).await;
        while count != DESIRED && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            count = healthy(&self.env, live_tg).await;
        }
        it.check(count == DESIRED, || {
            format!("the live side ({live}) has {count} healthy targets, not {DESIRED}")
        });

        let (code, out, err) = deployer(&self.env, &["status", "--service", "web"]).await;
        it.check(code == Some(0), || {
            format!("status exited {code:?}:\n{out}\n{err}")
        });
        let names_live = out.contains(&format!("live:    {live} "))
            || (live == "web:1" && out.contains("live:    not deployed by deployer yet"));
        it.check(out.contains("state:   idle") && names_live, || {
            format!("status does not say idle with {live} live:\n{out}\n{err}")
        });
        let (code, out, err) = deployer(&self.env, &["history", "--service", "web"]).await;
        it.check(code == Some(0), || {
            format!("history exited {code:?}:\n{out}\n{err}")
        });
        live.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_kills_and_stops_of_random_runs_leave_one_healthy_release_live() {
    let iterations =
        env_number("DEPLOYER_CHAOS_ITERATIONS").map_or(DEFAULT_ITERATIONS, |n| n as u32);
    chaos(Backend::Local, iterations).await;
}

/// The same with journals in S3 and the lock a 5 s DynamoDB lease (issue #15, item 6:
/// "with both backends"): a stopped run loses the service when its lease runs out, the
/// next command waits that out and takes over, and the stopped run, continued, changes
/// nothing. Fewer iterations: each interrupted one waits out a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_aws_backend_seeded_kills_and_stops_leave_one_healthy_release_live() {
    let iterations =
        env_number("DEPLOYER_CHAOS_AWS_ITERATIONS").map_or(DEFAULT_AWS_ITERATIONS, |n| n as u32);
    chaos(Backend::Aws, iterations).await;
}

async fn chaos(backend: Backend, iterations: u32) {
    let seed = env_number("DEPLOYER_CHAOS_SEED").unwrap_or(DEFAULT_SEED);
    eprintln!(
        "chaos: seed {seed:#x}, {backend:?} backend, {iterations} iterations (DEPLOYER_CHAOS_SEED to change)"
    );
    let mut rng = Rng(seed);

    // Every release's kind, from the seed: web:1 is live and good.
    let last = 1 + iterations * RELEASES_PER_ITERATION;
    let mut kinds = vec![Kind::Good, Kind::Good];
    for _ in 2..=last {
        kinds.push(rng.pick(&[
            (3, Kind::Good),
            (1, Kind::SmokeFails),
            (1, Kind::NeverHealthy),
        ]));
    }
    let broken: Vec<String> = (2..=last)
        .filter(|&r| kinds[r as usize] == Kind::NeverHealthy)
        .map(|r| format!("web:{r}"))
        .collect();
    let broken: Vec<&str> = broken.iter().map(String::as_str).collect();
    let env = EcsEnv::start(&broken).await;
    // The world registers web:1..web:3; the rest in order.
    for revision in 4..=last {
        env.clients
            .ecs
            .register_task_definition()
            .family("web")
            .container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name("web")
                    .image(format!("shop/web:{revision}"))
                    .memory(256)
                    .port_mappings(
                        aws_sdk_ecs::types::PortMapping::builder()
                            .container_port(8080)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let good = App::start(200, "ok");
    let bad = App::start(500, "boom");
    let logs = env.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut chaos = Chaos {
        env,
        backend,
        seed,
        kinds,
        logs,
        started: 0,
        good: good.url.clone(),
        bad: bad.url.clone(),
    };
    let mut next_revision = 2;
    let all = Instant::now();
    for number in 1..=iterations {
        let started = Instant::now();
        let summary = chaos.iteration(&mut rng, number, &mut next_revision).await;
        eprintln!(
            "chaos seed {seed:#x} ({backend:?}) iteration {number}: {summary} ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "chaos ({backend:?}): {iterations} iterations in {:.0}s",
        all.elapsed().as_secs_f64()
    );
}
