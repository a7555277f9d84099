//! The daemon's audit store against tampering, deletion, rollback, a full
//! store and a crash: real rkmd, real SoftHSM token, real SQLite file.

use std::time::Duration;

use rkm_client::connect::Target;
use rkm_proto::checkpoint::{VerifierKey, open_signed_checkpoint};
use rkm_proto::merkle::{Hash, leaf_hash, verify_inclusion};
use rkm_proto::v1::audit_service_client::AuditServiceClient;
use rkm_proto::v1::{
    GetAuditKeyRequest, GetCheckpointRequest, GetInclusionProofRequest, RecordNoteRequest,
};
use rkm_tests::{Daemon, DaemonBuilder};
use tonic::transport::Channel;

/// Longest wait for each step of the kill-during-a-burst test.
const BURST_TIMEOUT: Duration = Duration::from_secs(60);

async fn client(daemon: &Daemon) -> AuditServiceClient<Channel> {
    AuditServiceClient::new(Target::Socket(daemon.socket()).connect().await.unwrap())
}

async fn note(
    client: &mut AuditServiceClient<Channel>,
    message: &str,
) -> Result<u64, tonic::Status> {
    client
        .record_note(RecordNoteRequest {
            message: message.to_owned(),
            subject: String::new(),
        })
        .await
        .map(|response| response.into_inner().index)
}

/// The latest checkpoint, verified with the daemon's audit key: (size, root).
async fn verified_checkpoint(client: &mut AuditServiceClient<Channel>) -> (u64, Hash) {
    let key = client
        .get_audit_key(GetAuditKeyRequest {})
        .await
        .unwrap()
        .into_inner();
    let verifier = VerifierKey::parse(&key.verifier_key)
        .unwrap_or_else(|e| panic!("verifier key {:?}: {e}", key.verifier_key));
    let signed = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    let checkpoint = open_signed_checkpoint(&signed.signed_note, &verifier).unwrap();
    checkpoint.check_origin(&key.origin).unwrap();
    (checkpoint.size(), *checkpoint.root())
}

fn entry_count(daemon: &Daemon) -> i64 {
    let db = rusqlite::Connection::open(daemon.state_dir().join("rkm.sqlite3")).unwrap();
    db.query_row("SELECT COUNT(*) FROM audit_entries", [], |row| row.get(0))
        .unwrap()
}

/// Starts `rkmd serve` expecting a refusal; returns its log.
fn refused_start(daemon: &Daemon) -> String {
    let mut child = daemon.spawn_serve().unwrap();
    let status = (0..1500)
        .find_map(|_| {
            let status = child.try_wait().unwrap();
            if status.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            status
        })
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("rkmd kept serving:\n{}", daemon.log())
        });
    assert!(!status.success(), "rkmd started:\n{}", daemon.log());
    daemon.log()
}

#[tokio::test]
async fn notes_are_entries_covered_by_a_signed_checkpoint_with_inclusion_proofs() {
    let daemon = tokio::task::spawn_blocking(Daemon::start)
        .await
        .unwrap()
        .unwrap();
    let mut client = client(&daemon).await;
    let index = note(&mut client, "HSM firmware upgraded to 2.6.1")
        .await
        .unwrap();
    let (size, root) = verified_checkpoint(&mut client).await;
    assert!(size > index, "the checkpoint covers the note");
    let proof = client
        .get_inclusion_proof(GetInclusionProofRequest {
            index,
            tree_size: size,
        })
        .await
        .unwrap()
        .into_inner();
    let entry = String::from_utf8(proof.entry.clone()).unwrap();
    assert!(entry.contains("HSM firmware upgraded"), "{entry}");
    assert!(entry.contains(r#""action":"audit.note""#), "{entry}");
    assert!(entry.contains(r#""actor":"local:uid="#), "{entry}");
    let hashes: Vec<Hash> = proof
        .hashes
        .iter()
        .map(|h| Hash::try_from_slice(h).unwrap())
        .collect();
    verify_inclusion(index, size, &leaf_hash(&proof.entry), &hashes, &root).unwrap();

    let empty = note(&mut client, "   ").await.unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
}

#[test]
fn edited_entry_is_caught_at_restart() {
    let mut daemon = Daemon::start().unwrap();
    daemon.stop_with("TERM").unwrap();
    let db = rusqlite::Connection::open(daemon.state_dir().join("rkm.sqlite3")).unwrap();
    db.execute(
        "UPDATE audit_entries SET entry = CAST(replace(CAST(entry AS TEXT), 'daemon.init', 'daemon.tidy') AS BLOB) WHERE idx = 0",
        [],
    )
    .unwrap();
    drop(db);
    let log = refused_start(&daemon);
    assert!(log.contains("the log was edited"), "{log}");
}

#[test]
fn deleted_database_is_caught_and_init_will_not_start_a_new_log() {
    let mut daemon = Daemon::start().unwrap();
    daemon.stop_with("TERM").unwrap();
    for name in ["rkm.sqlite3", "rkm.sqlite3-wal", "rkm.sqlite3-shm"] {
        let _ = std::fs::remove_file(daemon.state_dir().join(name));
    }
    let log = refused_start(&daemon);
    assert!(log.contains("run `rkmd init` first"), "{log}");
    let init = daemon.rkmd(&["init"]).unwrap();
    assert!(
        !init.status.success(),
        "init started a fresh log over a token that has one"
    );
    let message = String::from_utf8_lossy(&init.stderr);
    assert!(
        message.contains("deleted, replaced or rolled back"),
        "{message}"
    );
}

#[test]
fn older_backup_of_the_database_is_caught_at_restart() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let state = daemon.state_dir();
    for name in ["rkm.sqlite3", "rkm.sqlite3-wal"] {
        if state.join(name).exists() {
            std::fs::copy(state.join(name), backup.path().join(name)).unwrap();
        }
    }
    daemon.serve().unwrap();
    daemon.stop_with("TERM").unwrap();
    let _ = std::fs::remove_file(state.join("rkm.sqlite3-wal"));
    let _ = std::fs::remove_file(state.join("rkm.sqlite3-shm"));
    for name in ["rkm.sqlite3", "rkm.sqlite3-wal"] {
        if backup.path().join(name).exists() {
            std::fs::copy(backup.path().join(name), state.join(name)).unwrap();
        }
    }
    let log = refused_start(&daemon);
    assert!(log.contains("rolled back to an older copy"), "{log}");
}

#[tokio::test]
async fn full_store_refuses_the_action_and_keeps_no_trace_of_it() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    daemon.set_env("RKM_STORE_MAX_SIZE_MB", "1");
    let daemon = tokio::task::spawn_blocking(move || daemon.serve().map(|()| daemon))
        .await
        .unwrap()
        .unwrap();
    let mut client = client(&daemon).await;
    let message = "x".repeat(4000);
    let mut accepted = 0u64;
    let refusal = loop {
        match note(&mut client, &message).await {
            Ok(_) => accepted += 1,
            Err(status) => break status,
        }
        assert!(accepted < 10_000, "a 1 MiB store never filled up");
    };
    assert_eq!(refusal.code(), tonic::Code::Unavailable, "{refusal:?}");
    assert!(
        refusal.message().contains("could not be written durably"),
        "{}",
        refusal.message()
    );
    let entries_after_refusal = entry_count(&daemon);
    // Refused again, still nothing written; the daemon keeps serving reads.
    assert!(note(&mut client, &message).await.is_err());
    assert_eq!(entry_count(&daemon), entries_after_refusal);
    let stored: i64 = {
        let db = rusqlite::Connection::open(daemon.state_dir().join("rkm.sqlite3")).unwrap();
        db.query_row(
            "SELECT COUNT(*) FROM audit_entries WHERE entry LIKE '%xxxx%'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(
        u64::try_from(stored).unwrap(),
        accepted,
        "only accepted notes are in the log"
    );
    client.get_audit_key(GetAuditKeyRequest {}).await.unwrap();
}

#[tokio::test]
async fn kill_during_a_burst_of_appends_restarts_into_a_verifying_log() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    daemon.set_env("RKM_AUDIT_CHECKPOINT_INTERVAL_MS", "20");
    let daemon = tokio::task::spawn_blocking(move || daemon.serve().map(|()| daemon))
        .await
        .unwrap()
        .unwrap();
    let channel = Target::Socket(daemon.socket()).connect().await.unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..16 {
        let mut client = AuditServiceClient::new(channel.clone());
        writers.spawn(async move {
            for n in 0.. {
                if note(&mut client, &format!("burst {writer}/{n}"))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    // Let the burst run and some checkpoints be made, then kill -9.
    let mut observer = AuditServiceClient::new(channel.clone());
    let waited = tokio::time::timeout(BURST_TIMEOUT, async {
        loop {
            let (size, _) = verified_checkpoint(&mut observer).await;
            if size > 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "no checkpoint covered 200 entries within {BURST_TIMEOUT:?}: the burst or the checkpointer stalled"
    );
    let mut daemon = tokio::task::spawn_blocking(move || {
        let mut daemon = daemon;
        daemon.stop_with("KILL").unwrap();
        daemon
    })
    .await
    .unwrap();
    let stopped = tokio::time::timeout(BURST_TIMEOUT, async {
        while writers.join_next().await.is_some() {}
    })
    .await;
    assert!(
        stopped.is_ok(),
        "the writers still had notes in flight {BURST_TIMEOUT:?} after rkmd was killed"
    );

    let entries = entry_count(&daemon);
    daemon = tokio::task::spawn_blocking(move || daemon.serve().map(|()| daemon))
        .await
        .unwrap()
        .expect("rkmd restarts after kill -9: its store matches the token's checkpoint");
    let (mut client, (size, root)) = tokio::time::timeout(BURST_TIMEOUT, async {
        let mut client = client(&daemon).await;
        let checkpoint = verified_checkpoint(&mut client).await;
        (client, checkpoint)
    })
    .await
    .unwrap_or_else(|_| {
        panic!("the restarted rkmd gave no verified checkpoint within {BURST_TIMEOUT:?}")
    });
    assert!(
        size >= u64::try_from(entries).unwrap(),
        "the log after restart ({size}) lost entries that were committed ({entries})"
    );
    let last = size - 1;
    let proof = tokio::time::timeout(
        BURST_TIMEOUT,
        client.get_inclusion_proof(GetInclusionProofRequest {
            index: last,
            tree_size: size,
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("no inclusion proof within {BURST_TIMEOUT:?}"))
    .unwrap()
    .into_inner();
    let hashes: Vec<Hash> = proof
        .hashes
        .iter()
        .map(|h| Hash::try_from_slice(h).unwrap())
        .collect();
    verify_inclusion(last, size, &leaf_hash(&proof.entry), &hashes, &root).unwrap();
}
