//! The Unix socket for local administration: its mode and group are settings
//! (`listen.socket_mode`, `listen.socket_group`), it is bound so that it is
//! never wider than asked, and its connections accept any `:authority`
//! ([`authority`]), so stock gRPC clients of every language can use it.

pub mod authority;
mod group;

use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::net::UnixListener;

/// The permission bits of the socket: the owner (rkmd's user) always reads
/// and writes, the group may, others never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SocketMode(u32);

impl SocketMode {
    /// Only rkmd's own user (the default).
    pub const OWNER_ONLY: SocketMode = SocketMode(0o600);

    /// The mode as permission bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Parses an octal mode such as `0660` or `660`.
    ///
    /// # Errors
    /// Not octal, above 0777, giving any permission to other users (they
    /// must never reach the socket), or taking read and write from the owner
    /// (rkmd's own user and its local administrators).
    pub fn parse(text: &str) -> Result<Self, SocketModeError> {
        let digits = text.trim();
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SocketModeError::NotOctal);
        }
        let mode = u32::from_str_radix(digits, 8).map_err(|_| SocketModeError::NotOctal)?;
        if mode > 0o777 {
            return Err(SocketModeError::SpecialBits);
        }
        if mode & 0o007 != 0 {
            return Err(SocketModeError::OthersAllowed);
        }
        if mode & 0o600 != 0o600 {
            return Err(SocketModeError::OwnerLockedOut);
        }
        Ok(SocketMode(mode))
    }
}

impl Default for SocketMode {
    fn default() -> Self {
        Self::OWNER_ONLY
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl TryFrom<String> for SocketMode {
    type Error = SocketModeError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

/// Why a socket mode was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SocketModeError {
    #[error("expected an octal mode such as \"0600\" or \"0660\"")]
    NotOctal,
    #[error("only permission bits (at most 0777) may be given, no setuid, setgid or sticky bit")]
    SpecialBits,
    #[error(
        "the mode gives other users access; other users must never reach the socket: use 0600, or 0660 with listen.socket_group"
    )]
    OthersAllowed,
    #[error("the mode must let the owner read and write (0600 at least)")]
    OwnerLockedOut,
}

/// The group the socket is given: a name (looked up in /etc/group) or a
/// numeric gid (for groups that only a directory service knows).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum SocketGroup {
    Name(String),
    Gid(u32),
}

impl SocketGroup {
    /// Parses a group name or a numeric gid.
    ///
    /// # Errors
    /// Empty, or a name with characters no group name has (`:`, spaces,
    /// control characters).
    pub fn parse(text: &str) -> Result<Self, SocketGroupError> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(SocketGroup::Gid)
                .map_err(|_| SocketGroupError::GidTooLarge);
        }
        if text.is_empty()
            || text
                .chars()
                .any(|c| c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(SocketGroupError::Malformed);
        }
        Ok(SocketGroup::Name(text.to_owned()))
    }

    /// The numeric gid, looking a name up in /etc/group.
    ///
    /// # Errors
    /// /etc/group cannot be read or has no such group.
    pub fn resolve(&self) -> Result<u32, SocketError> {
        match self {
            SocketGroup::Gid(gid) => Ok(*gid),
            SocketGroup::Name(name) => {
                let contents = std::fs::read_to_string(group::GROUP_FILE).map_err(|source| {
                    SocketError::GroupFile {
                        path: PathBuf::from(group::GROUP_FILE),
                        source,
                    }
                })?;
                group::gid_of(&contents, name)
                    .ok_or_else(|| SocketError::UnknownGroup { name: name.clone() })
            }
        }
    }
}

impl fmt::Display for SocketGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketGroup::Name(name) => f.write_str(name),
            SocketGroup::Gid(gid) => write!(f, "{gid}"),
        }
    }
}

impl TryFrom<String> for SocketGroup {
    type Error = SocketGroupError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

/// Why a socket group setting was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SocketGroupError {
    #[error("expected a group name or a numeric gid")]
    Malformed,
    #[error("the gid is larger than any gid")]
    GidTooLarge,
}

/// Errors in setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another rkmd is listening on {}; stop it first", path.display())]
    InUse { path: PathBuf },
    #[error("cannot listen on {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {} to find listen.socket_group: {source}", path.display())]
    GroupFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "listen.socket_group {name:?} is not a group in /etc/group; create it, or give its numeric gid"
    )]
    UnknownGroup { name: String },
    #[error(
        "the directory {} of the socket can be written by anyone (mode {mode:04o}), so the socket could be swapped for a link: put listen.socket in a directory only rkmd's user can write (e.g. the state directory), or set the sticky bit (chmod +t)",
        path.display()
    )]
    OpenDirectory { path: PathBuf, mode: u32 },
    #[error(
        "cannot give the socket {} group {gid}: {source}; rkmd's user must be a member of the group (or run as root)",
        path.display()
    )]
    Chown {
        path: PathBuf,
        gid: u32,
        source: std::io::Error,
    },
}

/// Binds the socket at `path` with `mode` and, if given, `group`.
///
/// The umask is set around `bind` so that the socket is created 0600, and
/// it is widened to `mode` only after it has its group: no other user, and
/// no member of rkmd's own primary group, ever sees more than was asked.
///
/// # Errors
/// Another rkmd listens there, the group is unknown or cannot be given, or
/// the socket cannot be bound.
pub fn bind_unix_socket(
    path: &Path,
    mode: SocketMode,
    group: Option<&SocketGroup>,
) -> Result<UnixListener, SocketError> {
    let gid = group.map(SocketGroup::resolve).transpose()?;
    let bind_error = |source| SocketError::Bind {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(bind_error)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(bind_error)?;
        // Group and mode are set by path: in a directory others may write,
        // the socket could be replaced by a link to another file between
        // bind and chmod.
        let mode = std::fs::metadata(parent)
            .map_err(bind_error)?
            .permissions()
            .mode();
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Err(SocketError::OpenDirectory {
                path: parent.to_owned(),
                mode: mode & 0o7777,
            });
        }
    }
    let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(previous);
    let listener = bound.map_err(bind_error)?;
    if let Some(gid) = gid {
        std::os::unix::fs::lchown(path, None, Some(gid)).map_err(|source| SocketError::Chown {
            path: path.to_owned(),
            gid,
            source,
        })?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode.bits()))
        .map_err(bind_error)?;
    Ok(listener)
}

/// Removes the socket at shutdown; a socket already gone is not an error.
pub fn remove_socket(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        tracing::debug!(%error, "removing the socket at shutdown");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn mode_parses_octal_with_or_without_leading_zero() {
        assert_eq!(SocketMode::parse("0660").unwrap().bits(), 0o660);
        assert_eq!(SocketMode::parse("640").unwrap().bits(), 0o640);
        assert_eq!(SocketMode::parse(" 0600 ").unwrap().bits(), 0o600);
        assert_eq!(SocketMode::default().to_string(), "0600");
    }

    #[test]
    fn mode_giving_others_access_is_refused() {
        for mode in ["0666", "0604", "0602", "0601", "0607"] {
            assert_eq!(
                SocketMode::parse(mode),
                Err(SocketModeError::OthersAllowed),
                "{mode}"
            );
        }
        let message = SocketModeError::OthersAllowed.to_string();
        assert!(message.contains("other users must never"), "{message}");
    }

    #[test]
    fn malformed_or_special_modes_are_refused() {
        assert_eq!(
            SocketMode::parse("rw-rw----"),
            Err(SocketModeError::NotOctal)
        );
        assert_eq!(SocketMode::parse("0680"), Err(SocketModeError::NotOctal));
        assert_eq!(SocketMode::parse(""), Err(SocketModeError::NotOctal));
        assert_eq!(SocketMode::parse("0o660"), Err(SocketModeError::NotOctal));
        assert_eq!(SocketMode::parse("04660"), Err(SocketModeError::NotOctal));
        assert_eq!(SocketMode::parse("1660"), Err(SocketModeError::SpecialBits));
        assert_eq!(
            SocketMode::parse("0460"),
            Err(SocketModeError::OwnerLockedOut)
        );
        assert_eq!(
            SocketMode::parse("0060"),
            Err(SocketModeError::OwnerLockedOut)
        );
    }

    #[test]
    fn group_parses_as_gid_or_name() {
        assert_eq!(SocketGroup::parse("995"), Ok(SocketGroup::Gid(995)));
        assert_eq!(
            SocketGroup::parse("rkm-admins"),
            Ok(SocketGroup::Name("rkm-admins".to_owned()))
        );
        assert_eq!(SocketGroup::parse(""), Err(SocketGroupError::Malformed));
        assert_eq!(SocketGroup::parse("a:b"), Err(SocketGroupError::Malformed));
        assert_eq!(SocketGroup::parse("a b"), Err(SocketGroupError::Malformed));
        assert_eq!(
            SocketGroup::parse("99999999999"),
            Err(SocketGroupError::GidTooLarge)
        );
    }

    #[test]
    fn unknown_group_name_is_refused_naming_it() {
        let group = SocketGroup::Name("rkm-no-such-group-here".to_owned());
        let error = group.resolve().unwrap_err();
        assert!(matches!(error, SocketError::UnknownGroup { .. }), "{error}");
        assert!(error.to_string().contains("rkm-no-such-group-here"));
    }

    #[tokio::test]
    async fn bound_socket_has_the_mode_and_group_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rkmd.sock");
        let gid = rustix::process::getgid().as_raw();
        let mode = SocketMode::parse("0660").unwrap();
        let _listener = bind_unix_socket(&path, mode, Some(&SocketGroup::Gid(gid))).unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.mode() & 0o7777, 0o660);
        assert_eq!(metadata.gid(), gid);
    }

    #[test]
    fn socket_in_a_directory_anyone_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused =
            bind_unix_socket(&open.join("rkmd.sock"), SocketMode::default(), None).unwrap_err();
        assert!(
            matches!(refused, SocketError::OpenDirectory { mode: 0o777, .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("chmod +t"), "{refused}");
        assert!(!open.join("rkmd.sock").exists());
        // A sticky directory (as /tmp) lets nobody else replace the socket.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        bind_unix_socket(&open.join("rkmd.sock"), SocketMode::default(), None).unwrap();
    }

    #[tokio::test]
    async fn listening_socket_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rkmd.sock");
        let _first = bind_unix_socket(&path, SocketMode::default(), None).unwrap();
        let error = bind_unix_socket(&path, SocketMode::default(), None).unwrap_err();
        assert!(matches!(error, SocketError::InUse { .. }), "{error}");
    }
}
