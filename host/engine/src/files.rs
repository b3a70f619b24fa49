//! Reading the local files a user or an earlier run hands us — configs, plugins,
//! kubeconfigs, journals, history — as what they claim to be.
//!
//! `std::fs::read` follows a path wherever it leads: a config that is (or links to)
//! `/dev/zero` is read until memory runs out, and a FIFO blocks the process forever
//! waiting for a writer. Every such read goes through [`read`] instead, which opens
//! without blocking, insists on a regular file (checked on the opened file, so a swap
//! between check and read changes nothing), and stops at a limit per kind of file
//! ([`Kind`]) while reading, not after.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// A kind of file, and the most of it deployer will read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `deployer.toml`.
    Config,
    /// A plugin component (`.wasm`).
    Plugin,
    /// A kubeconfig.
    Kubeconfig,
    /// One deployment's journal.
    Journal,
    /// A service's `history.jsonl`.
    History,
    /// A small marker file (`active`, a lock's holder).
    Marker,
    /// A `deployer plugin test` scenario, a plugin crate's `Cargo.toml`.
    Scenario,
}

impl Kind {
    /// The most bytes of this kind deployer reads. Generous for anything real: a
    /// journal holds at most `max-steps` records of at most ~128 KiB each in the worst
    /// case of a hook's full key-value store journaled at every step, far less in
    /// practice; a plugin is a few MiB (a Python component is ~18 MiB).
    pub fn limit(self) -> u64 {
        const MIB: u64 = 1024 * 1024;
        match self {
            Kind::Config | Kind::Kubeconfig | Kind::Scenario => 4 * MIB,
            Kind::Plugin => 256 * MIB,
            Kind::Journal => 256 * MIB,
            Kind::History => 64 * MIB,
            Kind::Marker => 64 * 1024,
        }
    }

    /// deployer's own state: never read or written through a symbolic link. Anyone who
    /// can commit a link into `.deployer/` would otherwise have the next run write its
    /// lock, journal or history into whatever file the link names (and empty it).
    fn is_state(self) -> bool {
        matches!(self, Kind::Journal | Kind::History | Kind::Marker)
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Config => "a config",
            Kind::Plugin => "a plugin",
            Kind::Kubeconfig => "a kubeconfig",
            Kind::Journal => "a journal",
            Kind::History => "a history file",
            Kind::Marker => "a state marker",
            Kind::Scenario => "a scenario or manifest",
        }
    }
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Opening or reading failed (`NotFound` among them: see [`ReadError::not_found`]).
    Io(std::io::Error),
    /// Something other than a regular file: a directory, FIFO, socket or device.
    NotAFile(&'static str),
    /// Larger than its kind may be.
    TooLarge { kind: Kind },
}

impl ReadError {
    /// The file does not exist (often not an error: no history yet).
    pub fn not_found(&self) -> bool {
        matches!(self, ReadError::Io(err) if err.kind() == std::io::ErrorKind::NotFound)
    }

    /// The same error as an `std::io::Error`, for callers whose errors carry one.
    pub fn into_io(self) -> std::io::Error {
        match self {
            ReadError::Io(err) => err,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(err) => write!(f, "{err}"),
            ReadError::NotAFile(what) => write!(f, "it is {what}, not a regular file"),
            ReadError::TooLarge { kind } => write!(
                f,
                "it is larger than the {} MiB {} may be",
                kind.limit() / (1024 * 1024),
                kind.noun()
            ),
        }
    }
}

impl std::error::Error for ReadError {}

/// The whole of the regular file at `path` (symbolic links followed), at most
/// `kind.limit()` bytes of it.
///
/// # Errors
/// See [`ReadError`]. Never blocks on a FIFO and never reads past the limit.
pub fn read(path: &Path, kind: Kind) -> Result<Vec<u8>, ReadError> {
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, forever. It
    // changes nothing for a regular file.
    let flags = if kind.is_state() {
        libc::O_NONBLOCK | libc::O_NOFOLLOW
    } else {
        libc::O_NONBLOCK
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(link_refused)?;
    let meta = regular(&file)?;
    let limit = kind.limit();
    if meta.len() > limit {
        return Err(ReadError::TooLarge { kind });
    }
    // The file may grow after the check: the limit holds while reading too.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { kind });
    }
    Ok(bytes)
}

/// Open `options` at `path` without blocking on a FIFO, and insist on a regular file:
/// for files deployer writes as well as reads (journals, the lock).
///
/// # Errors
/// See [`ReadError`].
pub fn open(options: &mut std::fs::OpenOptions, path: &Path) -> Result<File, ReadError> {
    // Only deployer's state is opened to write: never through a link (see `is_state`).
    let file = options
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(link_refused)?;
    regular(&file)?;
    Ok(file)
}

/// `ELOOP` from an `O_NOFOLLOW` open means the last component is a symbolic link;
/// `EISDIR`, a directory where a file belongs.
fn link_refused(err: std::io::Error) -> ReadError {
    if err.raw_os_error() == Some(libc::ELOOP) {
        ReadError::NotAFile("a symbolic link")
    } else if err.raw_os_error() == Some(libc::EISDIR) {
        // Opened to write, a directory fails before it can be looked at.
        ReadError::NotAFile("a directory")
    } else {
        ReadError::Io(err)
    }
}

/// `Err` naming the first of `dirs` that exists as a symbolic link: a state directory
/// deployer writes into must be the directory it names, not one a link points at.
///
/// # Errors
/// The link found.
pub fn no_linked_dirs<'a>(
    dirs: impl IntoIterator<Item = &'a Path>,
) -> Result<(), (&'a Path, ReadError)> {
    for dir in dirs {
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err((dir, ReadError::NotAFile("a symbolic link")));
        }
    }
    Ok(())
}

/// The open file's metadata, if it is a regular file.
fn regular(file: &File) -> Result<std::fs::Metadata, ReadError> {
    let meta = file.metadata().map_err(ReadError::Io)?;
    let file_type = meta.file_type();
    if file_type.is_file() {
        return Ok(meta);
    }
    Err(ReadError::NotAFile(kind_of(file_type)))
}

/// What a file that is not a regular file is, in words.
pub fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else {
        "a regular file"
    }
}

/// [`read`], as UTF-8 text.
///
/// # Errors
/// See [`read`]; invalid UTF-8 is an `InvalidData` I/O error naming where it starts.
pub fn read_text(path: &Path, kind: Kind) -> Result<String, ReadError> {
    String::from_utf8(read(path, kind)?).map_err(|err| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (invalid byte at offset {})",
                err.utf8_error().valid_up_to()
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking_or_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a device"),
            (link.as_path(), "a device"),
            (dir.path(), "a directory"),
        ] {
            let err = read(path, Kind::Config).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("it is {what}, not a regular file"),
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn a_file_over_its_kinds_limit_is_refused_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("active");
        let limit = Kind::Marker.limit();
        std::fs::write(&path, vec![b'a'; usize::try_from(limit).unwrap()]).unwrap();
        assert_eq!(read(&path, Kind::Marker).unwrap().len() as u64, limit);
        std::fs::write(&path, vec![b'a'; usize::try_from(limit + 1).unwrap()]).unwrap();
        let err = read(&path, Kind::Marker).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { .. }), "{err}");
        // A sparse file announcing terabytes is refused before a byte is read.
        let sparse = std::fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(1 << 40).unwrap();
        let err = read(&dir.path().join("sparse"), Kind::Journal).unwrap_err();
        assert!(err.to_string().contains("larger than the 256 MiB"), "{err}");
    }

    #[test]
    fn a_missing_file_is_told_apart() {
        let err = read(Path::new("/nonexistent/deployer"), Kind::History).unwrap_err();
        assert!(err.not_found());
    }
}
