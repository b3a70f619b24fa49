//! Standard output and standard error as every command writes them.
//!
//! `println!` panics when stdout cannot be written (`> /dev/full`, a full disk under
//! `run --output json > summary.json`), and `eprintln!` does the same for stderr. A
//! deployment tool must not die halfway through a rollout because its report could not
//! be printed, so every byte goes through here instead (clippy's `print_stdout` and
//! `print_stderr` lints hold the rest of the crate to it):
//!
//! - stdout: the first failed write is remembered and later writes are skipped; the
//!   command carries on to its end, and `main` then reports the failure in one line on
//!   stderr and exits 4 ([`stdout_failure`]). A reader that closed the pipe
//!   (`deployer history | head`) ends the process quietly by SIGPIPE, as set in `main`;
//!   where SIGPIPE is ignored anyway, a broken pipe is remembered as quiet too.
//! - stderr: best effort. If stderr itself cannot be written there is nowhere left to
//!   say so.

use std::fmt;
use std::io::{self, Write};
use std::sync::Mutex;

/// Why stdout stopped taking output, once it has.
static STDOUT_FAILED: Mutex<Option<io::Error>> = Mutex::new(None);

/// Write to stdout (use [`out!`](crate::out) / [`outln!`](crate::outln)).
pub fn stdout(args: fmt::Arguments<'_>) {
    let mut failed = STDOUT_FAILED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if failed.is_some() {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.flush()) {
        *failed = Some(err);
    }
}

/// Write bytes to stdout as they are (a man page, a completion script).
pub fn stdout_bytes(bytes: &[u8]) {
    stdout(format_args!("{}", String::from_utf8_lossy(bytes)));
}

/// Write to stderr, best effort (use [`errln!`](crate::errln)).
pub fn stderr(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// What went wrong with stdout, if anything did and it is worth reporting: `None` when
/// every write succeeded, or when the reader merely went away (a closed pipe is how
/// `| head` says it has seen enough, not an error).
pub fn stdout_failure() -> Option<io::Error> {
    let failed = STDOUT_FAILED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match &*failed {
        Some(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            Some(io::Error::new(err.kind(), err.to_string()))
        }
        _ => None,
    }
}

/// `print!` that cannot panic: see the module doc.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!($($arg)*))
    };
}

/// `println!` that cannot panic: see the module doc.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that cannot panic: see the module doc.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}
