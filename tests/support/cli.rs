//! The real `deployer` binary as the suites and the overhead benchmark run it: where it
//! is, run against moto on a directory's `deployer.toml` ([`command`], [`deployer`]),
//! or offline ([`plain`], [`run`], [`validate`]); and paths in the repository ([`repo`]).

use std::path::{Path, PathBuf};
use std::process::Output;

use super::config::ConfigBuilder;

/// The binary cargo built next to this test (or bench) executable.
pub fn deployer_bin() -> PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    let bin = path.join("deployer");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo test --workspace` does, and scripts/bench.sh \
         for the benchmarks)",
        bin.display()
    );
    bin
}

/// `path` in the repository.
pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(path)
}

/// `deployer ARGS --config dir/deployer.toml` with moto's test credentials.
pub fn command(dir: &Path, args: &[&str]) -> tokio::process::Command {
    command_at(&dir.join("deployer.toml"), args)
}

/// `deployer ARGS --config CONFIG` with moto's test credentials (for a test that keeps
/// more than one config next to the same `.deployer` state).
pub fn command_at(config: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(deployer_bin());
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env(
            "DEPLOYER_CACHE_DIR",
            std::env::temp_dir().join("deployer-e2e-cache"),
        )
        .kill_on_drop(true);
    cmd
}

/// (exit code, stdout, stderr) of [`command`].
pub async fn deployer(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = command(dir, args).output().await.unwrap();
    outcome(out, |bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// The binary for commands that reach no cloud, with a plugin cache of its own.
pub fn plain() -> std::process::Command {
    let mut cmd = std::process::Command::new(deployer_bin());
    cmd.env(
        "DEPLOYER_CACHE_DIR",
        std::env::temp_dir().join("deployer-cli-tests-cache"),
    );
    cmd
}

/// (exit code, stdout, stderr) of `deployer ARGS` by [`plain`]; its output must be UTF-8.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = plain().args(args).output().unwrap();
    outcome(out, |bytes| String::from_utf8(bytes).unwrap())
}

/// [`run`] of `deployer validate` on `config`, written as `dir/deployer.toml`.
pub fn validate(dir: &Path, config: &ConfigBuilder) -> (i32, String, String) {
    let path = config.write(dir);
    run(&["validate", "--config", path.to_str().unwrap()])
}

/// The exit code (-1 if a signal ended the process) and the output as text.
fn outcome(out: Output, text: fn(Vec<u8>) -> String) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

/// What a command run by [`bounded`] did: its exit code (`None` when a signal ended it
/// or it was killed), its output as text, and whether it was killed for hanging.
pub struct Bounded {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub hung: bool,
}

/// Run `cmd` (stdin empty, stdout and stderr captured through files, so a child that
/// never exits cannot block the reads), killed after 30 s: a hang is a result, not a
/// stuck suite.
pub fn bounded(cmd: &mut std::process::Command) -> Bounded {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let (code, hung) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status.code(), false);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |path: &Path| String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    Bounded {
        code,
        stdout: read(&out),
        stderr: read(&err),
        hung,
    }
}

/// Make a FIFO at `path` (nobody writing, nobody reading).
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// What a command wrote to a terminal (a pseudo-terminal the test reads): the text
/// with the terminal's `\r\n` line ends back to `\n`, and what it wrote to a pipe.
pub struct OnTerminal {
    pub code: Option<i32>,
    pub terminal: String,
    pub piped: String,
}

/// Run `cmd` with stderr on a pseudo-terminal, as a person at a shell sees it, and
/// stdout on the same terminal (`stdout_too`) or on a pipe (`deployer … > log`).
pub async fn on_terminal(mut cmd: tokio::process::Command, stdout_too: bool) -> OnTerminal {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: out-pointers to two ints; no name, termios or window size asked for.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fresh descriptors that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    cmd.stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(slave.try_clone().unwrap()));
    if stdout_too {
        cmd.stdout(std::process::Stdio::from(slave.try_clone().unwrap()));
    } else {
        cmd.stdout(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap();
    // Only the child holds the terminal now (the command kept copies of it until
    // dropped): reading the master ends (EIO) when the child exits.
    drop(cmd);
    drop(slave);
    let reader = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::from(master);
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
        bytes
    });
    let mut piped = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        tokio::io::AsyncReadExt::read_to_end(&mut out, &mut piped)
            .await
            .unwrap();
    }
    let status = child.wait().await.unwrap();
    let terminal = reader.await.unwrap();
    OnTerminal {
        code: status.code(),
        terminal: String::from_utf8_lossy(&terminal).replace("\r\n", "\n"),
        piped: String::from_utf8_lossy(&piped).into_owned(),
    }
}
