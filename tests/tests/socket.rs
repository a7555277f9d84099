//! End to end: the socket's mode and group are settings, a mode open to
//! other users is refused, and an unknown group stops rkmd at start.

use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use rkm_tests::{Daemon, DaemonBuilder};

/// Runs `rkmd serve` expecting it to refuse to start; returns its log.
fn serve_expecting_refusal(daemon: &Daemon) -> String {
    let mut child = daemon.spawn_serve().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "rkmd serve exited 0:\n{}", daemon.log());
            return daemon.log();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rkmd serve kept running:\n{}", daemon.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The name /etc/group gives `gid`, so the test goes through the name lookup.
fn group_name(gid: u32) -> Option<String> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let found: u32 = fields.nth(1)?.parse().ok()?;
            (found == gid).then(|| name.to_owned())
        })
}

#[test]
fn socket_mode_0660_and_primary_group_by_name_are_set_on_the_socket() {
    let gid = rustix::process::getgid().as_raw();
    let group = group_name(gid).expect("this user's primary group is in /etc/group");
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    daemon.set_env("RKM_LISTEN_SOCKET_MODE", "0660");
    daemon.set_env("RKM_LISTEN_SOCKET_GROUP", group);
    daemon.serve().unwrap();
    let metadata = std::fs::metadata(daemon.socket()).unwrap();
    assert_eq!(metadata.mode() & 0o7777, 0o660, "{:o}", metadata.mode());
    assert_eq!(metadata.gid(), gid);
    let status = daemon.rkm(&["status"]).unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn default_socket_is_only_for_rkmds_user() {
    let daemon = Daemon::start().unwrap();
    let metadata = std::fs::metadata(daemon.socket()).unwrap();
    assert_eq!(metadata.mode() & 0o7777, 0o600, "{:o}", metadata.mode());
}

#[test]
fn socket_mode_open_to_other_users_stops_rkmd_saying_why() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    daemon.set_env("RKM_LISTEN_SOCKET_MODE", "0666");
    let log = serve_expecting_refusal(&daemon);
    assert!(log.contains("RKM_LISTEN_SOCKET_MODE"), "{log}");
    assert!(log.contains("other users must never"), "{log}");
    assert!(!daemon.socket().exists(), "a socket was made");
}

#[test]
fn unknown_socket_group_stops_rkmd_naming_it() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    daemon.set_env("RKM_LISTEN_SOCKET_GROUP", "rkm-no-such-group");
    let log = serve_expecting_refusal(&daemon);
    assert!(log.contains("rkm-no-such-group"), "{log}");
    assert!(log.contains("not a group in /etc/group"), "{log}");
    assert!(!daemon.socket().exists(), "a socket was made");
}
