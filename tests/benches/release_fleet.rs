//! A release of many services against moto (issue #19): `deployer run release fleet`
//! over 1, 10 and 50 ECS services on task sets, each behind its own target-group pair on
//! a listener rule of a shared ALB (`support/moto_fleet_world.py`), deployed by canary
//! in one process — one wave for a single service, else two waves of half the fleet.
//!
//! What it measures, per fleet size (median of [`RUNS`] runs of the release binary):
//! - the overhead beyond the configured waits: wall time of the whole process minus the
//!   bakes on the critical path (per wave, the longest service's bakes — all services
//!   have the same [`STEPS`], so `waves × BAKE_PER_SERVICE`);
//! - where that time goes: start-up until the first wave begins (config, every
//!   service's connection, strategy, gates and preflight), each wave, and the CPU time of
//!   deployer (its own work) and of moto (serving deployer and the stand-in agent) over
//!   the run: moto is one Python process sharing the 2 cores with deployer;
//! - AWS API calls per service per traffic step (max and median over every service's
//!   shifts, from `release.services[].run.steps[].aws-api-calls` of the JSON summary);
//! - peak RSS of the deployer process (`wait4`'s `ru_maxrss`).
//!
//! The stand-in ECS agent here ([`FleetAgent`]) plays the tasks of the fleet's task sets
//! as `support::EcsAgent` does for one service, but reads the fleet's services in
//! batches of 10 (as DescribeServices allows) and registers or deregisters only what
//! changed: the suites' agent describes every target group's health every 50 ms, which
//! for 100 target groups would keep moto busy on its own and be measured as deployer's.
//!
//! `cargo bench -p deployer-tests --bench release_fleet [-- SIZE...]` (e.g. `-- 50`);
//! `DEPLOYER_BENCH_BIN` measures another binary, `RELEASE_FLEET_KEEP=DIR` keeps each
//! run's JSON summary and timed log. Results: BENCHMARKS.md.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use deployer_targets::aws::Clients;
use deployer_tests::support::config::ConfigBuilder;
use deployer_tests::support::{App, Moto, cli};

const RUNS: usize = 3;
const SIZES: [usize; 3] = [1, 10, 50];
/// Each service's canary: 10% and 50% with a bake each, then 100% (added by the
/// strategy, no bake). One smoke-test request after each shift.
const STEPS: &str = "[{ weight = 10, bake = \"1s\" }, { weight = 50, bake = \"1s\" }]";
/// The configured waits of one service's deployment: the sum of [`STEPS`]' bakes.
const BAKE_PER_SERVICE: Duration = Duration::from_secs(2);
/// Tasks per service (a task set's scale is a share of it).
const DESIRED: u32 = 4;

/// One service of the world: its name, listener rule and (blue, green) target groups.
#[derive(Clone)]
struct FleetService {
    name: String,
    rule: String,
    blue: String,
    green: String,
}

/// `support/moto_fleet_world.py` run against `moto`: `count` services in cluster `fleet`.
fn fleet_world(moto: &Moto, count: usize) -> Vec<FleetService> {
    let json = moto.world_json("moto_fleet_world.py", &[&count.to_string()]);
    json["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap().to_string();
            FleetService {
                name: field("name"),
                rule: field("rule"),
                blue: field("blue"),
                green: field("green"),
            }
        })
        .collect()
}

/// The fleet's `deployer.toml`: every service on its task sets and its own listener
/// rule, smoke-tested by one request to `url` after each shift, and the release `fleet`
/// in `waves`.
fn config(moto: &Moto, services: &[FleetService], waves: &[&[&str]], url: &str) -> ConfigBuilder {
    let mut config = ConfigBuilder::new().aws(&moto.endpoint);
    for s in services {
        config = config.service(&s.name, |c| {
            // Generous: on 2 cores moto answers 25 services' calls one at a time.
            c.health_timeout("60s")
                .target(|t| {
                    t.str("kind", "ecs")
                        .str("cluster", "fleet")
                        .str("service", &s.name)
                        .int("desired-count", i64::from(DESIRED))
                })
                .traffic(|t| {
                    t.str("rule-arn", &s.rule)
                        .strs("target-groups", &[&s.blue, &s.green])
                })
                .http_gate(&["post-traffic"], url, 1)
                .canary_steps(STEPS)
        });
    }
    config.release("fleet", waves, "canary", |t| t, Vec::new())
}

/// What the ECS agent and the ALB do for the fleet's task sets: start as many tasks as
/// each task set's scale asks (as targets of its target group, healthy at once) and stop
/// the rest. It keeps what it registered, so each round costs one DescribeServices per 10
/// services plus a call per target group that changed.
struct FleetAgent {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    rounds: Arc<AtomicU64>,
}

impl FleetAgent {
    fn start(clients: Clients, services: Vec<String>) -> FleetAgent {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let rounds = Arc::new(AtomicU64::new(0));
        let (flag, counted, done) = (stop.clone(), calls.clone(), rounds.clone());
        tokio::spawn(async move {
            let mut registered: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                if reconcile(&clients, &services, &mut registered, &counted)
                    .await
                    .is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        FleetAgent {
            stop,
            calls,
            rounds,
        }
    }

    /// Wait until two full rounds went through (the world's first task sets are up).
    async fn settled(&self) {
        let start = self.rounds.load(Ordering::Relaxed);
        while self.rounds.load(Ordering::Relaxed) < start + 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FleetAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn reconcile(
    clients: &Clients,
    services: &[String],
    registered: &mut BTreeMap<String, BTreeSet<String>>,
    calls: &AtomicU64,
) -> Result<(), String> {
    let mut wanted: BTreeMap<String, BTreeSet<String>> = registered
        .keys()
        .map(|tg| (tg.clone(), BTreeSet::new()))
        .collect();
    for batch in services.chunks(10) {
        calls.fetch_add(1, Ordering::Relaxed);
        let out = clients
            .ecs
            .describe_services()
            .cluster("fleet")
            .set_services(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        for service in out.services() {
            let desired = f64::from(service.desired_count());
            for set in service.task_sets() {
                let Some(tg) = set
                    .load_balancers()
                    .first()
                    .and_then(|l| l.target_group_arn())
                else {
                    continue;
                };
                let percent = set.scale().map(|s| s.value()).unwrap_or(0.0);
                let units = (percent * desired / 100.0).round() as u32;
                let release = set.task_definition().unwrap_or_default();
                let rev = release.rsplit(':').next().unwrap_or("0");
                wanted
                    .entry(tg.to_string())
                    .or_default()
                    .extend((1..=units).map(|i| format!("10.0.{rev}.{i}")));
            }
        }
    }
    for (tg, ips) in wanted {
        let present = registered.entry(tg.clone()).or_default();
        let add: Vec<&String> = ips.difference(present).collect();
        let remove: Vec<&String> = present.difference(&ips).collect();
        let target = |ip: &String| TargetDescription::builder().id(ip).port(8080).build();
        if !add.is_empty() {
            calls.fetch_add(1, Ordering::Relaxed);
            clients
                .elb
                .register_targets()
                .target_group_arn(&tg)
                .set_targets(Some(add.into_iter().map(target).collect()))
                .send()
                .await
                .map_err(|e| e.to_string())?;
        }
        if !remove.is_empty() {
            calls.fetch_add(1, Ordering::Relaxed);
            clients
                .elb
                .deregister_targets()
                .target_group_arn(&tg)
                .set_targets(Some(remove.into_iter().map(target).collect()))
                .send()
                .await
                .map_err(|e| e.to_string())?;
        }
        *present = ips;
    }
    Ok(())
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12] // utime, stime (fields 14 and 15 of the line)
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// The moto server listening at `endpoint` (the process running `moto_ecs.py PORT`).
fn moto_pid(endpoint: &str) -> u32 {
    let port = endpoint.rsplit(':').next().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.iter().any(|a| a.ends_with(b"moto_ecs.py")) && args.contains(&port.as_bytes())
        })
        .expect("moto's process")
}

/// What one release run measured.
struct Sample {
    wall: Duration,
    /// From start until the log says the first wave begins, then each wave's length.
    to_first_wave: Duration,
    waves: Vec<Duration>,
    cpu: Duration,
    moto_cpu: Duration,
    agent_calls: u64,
    peak_rss_kib: u64,
    calls: u64,
    calls_per_service: Vec<u64>,
    shift_calls: Vec<u64>,
    /// Each operation's calls, service by service (a service that made none counts 0).
    by_operation: BTreeMap<String, Vec<u64>>,
}

/// Run `deployer run release fleet` deploying revision `revision` of every service, as a
/// child whose resource use `wait4` reports; the log's lines are timed as they arrive.
fn release_run(
    bin: &Path,
    dir: &Path,
    services: &[FleetService],
    revision: u32,
    moto: u32,
    agent_calls: &AtomicU64,
) -> Sample {
    let mut args: Vec<String> = ["run", "release", "fleet", "--output", "json", "--config"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(dir.join("deployer.toml").display().to_string());
    for s in services {
        args.push("--release".into());
        args.push(format!("{0}={0}:{revision}", s.name));
    }
    let moto_before = cpu_of(moto);
    let agent_before = agent_calls.load(Ordering::Relaxed);
    let started = Instant::now();
    // Reaped below by wait4, which also gives its resource usage (peak RSS).
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(bin)
        .args(&args)
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("DEPLOYER_CACHE_DIR", dir.join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).unwrap();
        out
    });
    let stderr = child.stderr.take().unwrap();
    let logging = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .map(|line| (started.elapsed(), line))
            .collect::<Vec<_>>()
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the child is ours and not yet reaped; status and usage are valid pointers.
    let reaped = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(reaped, child.id() as libc::pid_t, "wait4 failed");
    let moto_cpu = cpu_of(moto).saturating_sub(moto_before);
    let agent = agent_calls.load(Ordering::Relaxed) - agent_before;
    let stdout = reading.join().unwrap();
    let log = logging.join().unwrap();
    let text = |lines: &[(Duration, String)]| {
        lines
            .iter()
            .map(|(at, l)| format!("{:>7.3}s {l}", at.as_secs_f64()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    assert_eq!(code, 0, "the release must be promoted:\n{}", text(&log));
    let summary: serde_json::Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&stdout)));
    // `RELEASE_FLEET_KEEP=DIR` keeps each run's summary and timed log there, to read
    // where a service's calls and time went step by step.
    if let Some(keep) = std::env::var_os("RELEASE_FLEET_KEEP") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        let name = format!("{}-services-r{revision}", services.len());
        std::fs::write(keep.join(format!("{name}.json")), &stdout).unwrap();
        std::fs::write(keep.join(format!("{name}.log")), text(&log)).unwrap();
    }
    assert_eq!(summary["result"], "promoted", "{summary:#}");

    let wave_starts: Vec<Duration> = log
        .iter()
        .filter(|(_, l)| l.contains(": wave ") && l.contains(" of "))
        .map(|(at, _)| *at)
        .collect();
    assert!(
        !wave_starts.is_empty(),
        "no wave in the log:\n{}",
        text(&log)
    );
    let mut bounds = wave_starts.clone();
    bounds.push(wall);
    let waves = bounds.windows(2).map(|w| w[1] - w[0]).collect();

    let members = summary["release"]["services"].as_array().unwrap();
    assert_eq!(members.len(), services.len(), "{summary:#}");
    let mut calls_per_service = Vec::new();
    let mut shift_calls = Vec::new();
    let mut by_operation: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (i, member) in members.iter().enumerate() {
        assert_eq!(member["result"], "promoted", "{member:#}");
        let run = &member["run"];
        calls_per_service.push(run["aws-api-calls"]["total"].as_u64().unwrap());
        for (op, n) in run["aws-api-calls"]["by-operation"].as_object().unwrap() {
            let counts = by_operation.entry(op.clone()).or_default();
            counts.resize(i, 0);
            counts.push(n.as_u64().unwrap());
        }
        let shifts: Vec<u64> = run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"].as_str().unwrap().starts_with("shift traffic"))
            .map(|s| s["aws-api-calls"].as_u64().expect("calls counted per step"))
            .collect();
        assert_eq!(shifts.len(), 3, "10%, 50%, 100%: {run:#}");
        shift_calls.extend(shifts);
    }
    for counts in by_operation.values_mut() {
        counts.resize(members.len(), 0);
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Sample {
        wall,
        to_first_wave: wave_starts[0],
        waves,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        moto_cpu,
        agent_calls: agent,
        peak_rss_kib: usage.ru_maxrss as u64,
        calls: summary["aws-api-calls"]["total"].as_u64().unwrap(),
        calls_per_service,
        shift_calls,
        by_operation,
    }
}

fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Deploy a fleet of `count` services [`RUNS`] times (alternating revisions 2 and 3) in
/// a fresh moto, and print its row.
async fn measure(count: usize) {
    let moto = Moto::start(&[]);
    let services = fleet_world(&moto, count);
    let clients = moto.clients().await;
    let agent = FleetAgent::start(clients, services.iter().map(|s| s.name.clone()).collect());
    agent.settled().await;
    let good = App::start(200, "ok");
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let waves: Vec<&[&str]> = if count == 1 {
        vec![&names[..]]
    } else {
        let (first, second) = names.split_at(count / 2);
        vec![first, second]
    };
    let dir = tempfile::tempdir().unwrap();
    config(&moto, &services, &waves, &good.url).write(dir.path());
    let waits = BAKE_PER_SERVICE * waves.len() as u32;
    let bin = std::env::var_os("DEPLOYER_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(cli::deployer_bin);
    let moto_pid = moto_pid(&moto.endpoint);

    let mut samples = Vec::new();
    for run in 0..RUNS {
        let revision = if run % 2 == 0 { 2 } else { 3 };
        let (path, calls) = (dir.path().to_path_buf(), agent.calls.clone());
        let blocking = {
            let services = services.clone();
            let bin = bin.clone();
            move || release_run(&bin, &path, &services, revision, moto_pid, &calls)
        };
        // The agent keeps running on the runtime while the child is waited for.
        samples.push(tokio::task::spawn_blocking(blocking).await.unwrap());
        agent.settled().await;
    }

    let wall = median(samples.iter().map(|s| s.wall).collect());
    let overhead = wall.saturating_sub(waits);
    let first = median(samples.iter().map(|s| s.to_first_wave).collect());
    let wave_times: Vec<String> = (0..waves.len())
        .map(|w| secs(median(samples.iter().map(|s| s.waves[w]).collect())))
        .collect();
    let cpu = median(samples.iter().map(|s| s.cpu).collect());
    let moto_cpu = median(samples.iter().map(|s| s.moto_cpu).collect());
    let agent_calls = median(samples.iter().map(|s| s.agent_calls).collect());
    let rss = samples.iter().map(|s| s.peak_rss_kib).max().unwrap();
    let calls = median(samples.iter().map(|s| s.calls).collect());
    let per_service = median(
        samples
            .iter()
            .flat_map(|s| s.calls_per_service.iter().copied())
            .collect(),
    );
    let shifts: Vec<u64> = samples
        .iter()
        .flat_map(|s| s.shift_calls.iter().copied())
        .collect();
    let shift_max = shifts.iter().copied().max().unwrap();
    let shift_median = median(shifts);
    println!(
        "| {count} | {} | {} | {} | {} | {} | {} | {} | {} | {calls} ({per_service}) | {shift_max} / {shift_median} | {:.1} MiB |",
        waves.len(),
        secs(wall),
        secs(waits),
        secs(overhead),
        secs(first),
        wave_times.join(" + "),
        secs(cpu),
        format_args!("{} ({agent_calls} agent calls)", secs(moto_cpu)),
        rss as f64 / 1024.0,
    );
    // Where a service's calls go: median and max per service, and the run's total, of
    // the median run (by wall time).
    let typical = samples.iter().find(|s| s.wall == wall).unwrap();
    for (op, counts) in &typical.by_operation {
        eprintln!(
            "  {op}: {} per service (max {}), {} in all",
            median(counts.clone()),
            counts.iter().max().unwrap(),
            counts.iter().sum::<u64>()
        );
    }
    for (i, s) in samples.iter().enumerate() {
        eprintln!(
            "  run {}: wall {}, first wave at {}, waves {:?}, deployer cpu {}, moto cpu {}, {} calls, rss {} KiB",
            i + 1,
            secs(s.wall),
            secs(s.to_first_wave),
            s.waves.iter().map(|w| secs(*w)).collect::<Vec<_>>(),
            secs(s.cpu),
            secs(s.moto_cpu),
            s.calls,
            s.peak_rss_kib
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let chosen: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes: Vec<usize> = if chosen.is_empty() {
        SIZES.to_vec()
    } else {
        chosen
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "release_fleet: {RUNS} runs per size against moto; canary {STEPS} on every service"
        );
        println!(
            "| services | waves | wall time (median) | configured waits | overhead | start-up to first wave | waves | deployer CPU | moto CPU | API calls (per service) | calls per traffic step (max / median) | peak RSS |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for count in sizes {
            measure(count).await;
        }
    });
}
