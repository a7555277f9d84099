//! Collecting a recovery's artefact bundle, while it is signed and after:
//! which states have an artefact, where a collector that already holds some
//! bytes resumes, and waiting for more. Nothing polls: the signer wakes the
//! collectors of its ceremony each time its writer flushes bytes to the file,
//! and once more when the ceremony completes or fails. Only that last wake
//! sends a collector to the store; a flush only sends it to the file, so
//! collectors cost the signer nothing however often it flushes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::Stream;
use rkm_proto::artefact::header_lines_digest;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::watch;

use super::recovery::RecoveryState;
use super::{CeremonyError, Services};

/// Bytes per artefact chunk sent to `rkm recovery collect`.
const CHUNK: usize = 256 * 1024;

/// A piece of an artefact bundle, at its place in the file.
#[derive(Debug)]
pub struct ArtefactChunk {
    pub offset: u64,
    pub data: Vec<u8>,
    /// The whole bundle's size, once the ceremony has completed; `None` while
    /// it is still being signed.
    pub complete_size: Option<u64>,
}

/// How many times a ceremony's state changed while someone was collecting
/// it; a wake that leaves it as it was is a flush.
type StateChanges = u64;

/// Per-ceremony wake-ups for the collectors waiting on an artefact that is
/// being written. Cheap to clone; a ceremony nobody collects costs nothing.
#[derive(Debug, Default, Clone)]
pub struct ArtefactWakeups {
    waiting: Arc<Mutex<HashMap<String, watch::Sender<StateChanges>>>>,
    /// Set when rkmd stops: every collector ends its stream then.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl ArtefactWakeups {
    /// A receiver that sees every wake of `ceremony_id` from now on.
    fn subscribe(&self, ceremony_id: &str) -> watch::Receiver<StateChanges> {
        let mut waiting = self.lock();
        // Ceremonies whose collectors have all gone away need no sender.
        waiting.retain(|_, sender| sender.receiver_count() > 0);
        waiting
            .entry(ceremony_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes every collector of `ceremony_id` to read the bytes just flushed.
    /// Safe to call from the artefact writer's blocking thread.
    fn flushed(&self, ceremony_id: &str) {
        self.wake(ceremony_id, |_| {});
    }

    /// Wakes every collector of `ceremony_id` to look at its state again.
    fn state_changed(&self, ceremony_id: &str) {
        self.wake(ceremony_id, |changes| *changes += 1);
    }

    fn wake(&self, ceremony_id: &str, change: impl FnOnce(&mut StateChanges)) {
        let mut waiting = self.lock();
        if let Some(sender) = waiting.get(ceremony_id) {
            if sender.receiver_count() == 0 {
                waiting.remove(ceremony_id);
            } else {
                sender.send_modify(change);
            }
        }
    }

    /// Ends every collector's stream: rkmd is stopping, and a stream left
    /// open would hold the shutdown until its ceremony finished signing.
    fn stop_all(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for sender in self.lock().values() {
            sender.send_modify(|_| {});
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<StateChanges>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Services {
    /// The artefact of `ceremony_id` as a stream of chunks, from `held_bytes`
    /// on if the collector already holds that many bytes of this very
    /// artefact (the SHA-256 of their header lines is `held_header_sha256`),
    /// else from the start. While the ceremony signs, the stream waits for
    /// each flush; it ends after the last byte of the completed bundle.
    ///
    /// # Errors
    /// No such ceremony, or it is in a state with no artefact (open,
    /// cancelled, expired, failed). Items of the stream: the signing fails,
    /// or the file cannot be read.
    pub async fn collect_artefact(
        &self,
        ceremony_id: String,
        held_bytes: u64,
        held_header_sha256: Vec<u8>,
    ) -> Result<
        impl Stream<Item = Result<ArtefactChunk, CeremonyError>> + Send + 'static,
        CeremonyError,
    > {
        // Subscribed before the state and the file are first read, so that a
        // flush or completion after that read cannot go unseen.
        let wake = self.artefact_wakeups()?.subscribe(&ceremony_id);
        let summary = self.get_recovery(ceremony_id).await?;
        match summary.state {
            RecoveryState::Signing | RecoveryState::Completed => {}
            other => {
                return Err(CeremonyError::FailedPrecondition(format!(
                    "ceremony {} is {}: there is no artefact{}",
                    summary.ceremony_id,
                    other.as_str(),
                    if other == RecoveryState::Failed {
                        format!(" ({})", summary.failure)
                    } else {
                        String::new()
                    }
                )));
            }
        }
        let seen_state_changes = *wake.borrow();
        let collector = Collector {
            path: self.artefact_path(&summary.ceremony_id)?,
            seen_state_changes,
            state_to_check: true,
            complete_size: None,
            services: self.clone(),
            ceremony_id: summary.ceremony_id,
            offset: held_bytes,
            unchecked_header: (held_bytes > 0).then_some(held_header_sha256),
            wake,
            buffer: vec![0; CHUNK],
        };
        Ok(futures_util::stream::unfold(
            Some(collector),
            |collector| async move {
                let mut collector = collector?;
                match collector.next_chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(collector))),
                    Ok(None) => None,
                    // The error is the stream's last item.
                    Err(error) => Some((Err(error), None)),
                }
            },
        ))
    }

    /// What the artefact writer calls after each flush of `ceremony_id`'s
    /// bundle, from any thread.
    pub(super) fn artefact_flushed_waker(&self, ceremony_id: &str) -> impl Fn() + Send + 'static {
        let wakeups = self.recovery.as_deref().map(|r| r.artefact_wakeups.clone());
        let ceremony_id = ceremony_id.to_owned();
        move || {
            if let Some(wakeups) = &wakeups {
                wakeups.flushed(&ceremony_id);
            }
        }
    }

    /// Wakes the collectors of `ceremony_id` after its state changed, so they
    /// read the rest of a completed bundle or learn why signing failed.
    pub(super) fn wake_artefact_collectors(&self, ceremony_id: &str) {
        if let Some(runtime) = self.recovery.as_deref() {
            runtime.artefact_wakeups.state_changed(ceremony_id);
        }
    }

    /// Ends the streams of every collector (at shutdown); they resume
    /// from where they are when run again.
    pub fn stop_artefact_collectors(&self) {
        if let Some(runtime) = self.recovery.as_deref() {
            runtime.artefact_wakeups.stop_all();
        }
    }

    fn artefact_wakeups(&self) -> Result<&ArtefactWakeups, CeremonyError> {
        self.recovery
            .as_deref()
            .map(|runtime| &runtime.artefact_wakeups)
            .ok_or_else(|| {
                CeremonyError::Internal("recovery ceremonies are not available".to_owned())
            })
    }
}

/// One collector's place in one artefact.
struct Collector {
    services: Services,
    ceremony_id: String,
    path: PathBuf,
    /// The next byte to send.
    offset: u64,
    /// The header digest the collector sent with the bytes it holds, until
    /// it has been compared with the artefact's.
    unchecked_header: Option<Vec<u8>>,
    wake: watch::Receiver<StateChanges>,
    /// The state changes seen by the last wait.
    seen_state_changes: StateChanges,
    /// Whether the state may have changed since the store was last asked.
    state_to_check: bool,
    /// The bundle's size, once the store said the ceremony completed.
    complete_size: Option<u64>,
    buffer: Vec<u8>,
}

impl Collector {
    /// The next chunk, waiting for the signer if it has written nothing new;
    /// `None` after the last byte of a completed bundle.
    async fn next_chunk(&mut self) -> Result<Option<ArtefactChunk>, CeremonyError> {
        if let Some(held_header) = self.unchecked_header.take() {
            self.offset = self.resume_offset(&held_header).await?;
        }
        loop {
            if self.state_to_check {
                self.state_to_check = false;
                let summary = self.services.get_recovery(self.ceremony_id.clone()).await?;
                if matches!(
                    summary.state,
                    RecoveryState::Failed | RecoveryState::Cancelled | RecoveryState::Expired
                ) {
                    return Err(CeremonyError::FailedPrecondition(format!(
                        "signing failed: {}",
                        summary.failure
                    )));
                }
                if summary.state == RecoveryState::Completed {
                    self.complete_size = Some(summary.artefact_size);
                }
            }
            // Read after the state: bytes a completed ceremony wrote are all
            // on disk before its state says so.
            let complete = self.complete_size.is_some();
            let read = match read_at(&self.path, self.offset, &mut self.buffer).await {
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound && !complete => 0,
                Err(error) => return Err(unreadable(&self.ceremony_id, &error)),
            };
            if read > 0 {
                let chunk = ArtefactChunk {
                    offset: self.offset,
                    data: self.buffer[..read].to_vec(),
                    complete_size: self.complete_size,
                };
                self.offset += read as u64;
                return Ok(Some(chunk));
            }
            if complete {
                return Ok(None);
            }
            self.wait_for_signer().await?;
        }
    }

    /// Where a collector holding `self.offset` bytes resumes: there if the
    /// header lines it holds are the artefact's, else at 0 (the artefact was
    /// signed anew after a restart, or the bytes belong to another ceremony).
    /// Waits while signing has not yet written the header.
    async fn resume_offset(&mut self, held_header: &[u8]) -> Result<u64, CeremonyError> {
        loop {
            match header_digest(&self.path).await {
                Ok(Some(digest)) if digest.as_slice() == held_header => return Ok(self.offset),
                Ok(Some(_)) => {
                    tracing::info!(
                        ceremony = %self.ceremony_id,
                        held = self.offset,
                        "the collector's bytes are not part of this artefact; sending it from the start"
                    );
                    return Ok(0);
                }
                Ok(None) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(unreadable(&self.ceremony_id, &error)),
            }
            // No header on disk yet: wait while signing, else let the stream
            // report the ceremony's state.
            let summary = self.services.get_recovery(self.ceremony_id.clone()).await?;
            if summary.state != RecoveryState::Signing {
                return Ok(0);
            }
            self.wait_for_signer().await?;
            // The stream asks the store again either way.
            self.state_to_check = true;
        }
    }

    /// Waits for the signer's next flush or change of state; returns at once
    /// if one happened since the last wait (or since subscribing).
    async fn wait_for_signer(&mut self) -> Result<(), CeremonyError> {
        let stopping = || {
            CeremonyError::Stopping(format!(
                "rkmd is stopping; {} bytes of the artefact of {} were sent: run the same collect again once rkmd serves, and it resumes",
                self.offset, self.ceremony_id
            ))
        };
        let wakeups = self.services.artefact_wakeups()?;
        if wakeups.stopping() {
            return Err(stopping());
        }
        self.wake.changed().await.map_err(|_| stopping())?;
        if wakeups.stopping() {
            return Err(stopping());
        }
        let state_changes = *self.wake.borrow_and_update();
        if state_changes != self.seen_state_changes {
            self.seen_state_changes = state_changes;
            self.state_to_check = true;
        }
        Ok(())
    }
}

/// The SHA-256 of the artefact's header lines, `None` while they are not
/// all on disk.
async fn header_digest(path: &Path) -> std::io::Result<Option<[u8; 32]>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(path)?;
        header_lines_digest(std::io::BufReader::new(file))
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn read_at(path: &Path, offset: u64, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    file.read(buffer).await
}

fn unreadable(ceremony_id: &str, error: &std::io::Error) -> CeremonyError {
    CeremonyError::Internal(format!(
        "the artefact of {ceremony_id} cannot be read: {error}"
    ))
}

#[cfg(test)]
mod tests {
    use super::ArtefactWakeups;

    #[test]
    fn a_wake_after_subscribing_is_seen_even_before_the_collector_waits() {
        let wakeups = ArtefactWakeups::default();
        let mut collector = wakeups.subscribe("cer-1");
        assert!(!collector.has_changed().unwrap(), "nothing happened yet");
        // The signer flushes between the collector's read and its wait.
        wakeups.flushed("cer-1");
        assert!(collector.has_changed().unwrap());
        assert_eq!(
            *collector.borrow_and_update(),
            0,
            "a flush is no change of state"
        );
        wakeups.state_changed("cer-1");
        assert!(collector.has_changed().unwrap());
        assert_eq!(*collector.borrow_and_update(), 1);
        wakeups.state_changed("cer-2");
        assert!(
            !collector.has_changed().unwrap(),
            "another ceremony's flush does not wake this collector"
        );
    }

    #[test]
    fn every_collector_of_a_ceremony_is_woken_and_gone_collectors_are_forgotten() {
        let wakeups = ArtefactWakeups::default();
        let first = wakeups.subscribe("cer-1");
        let second = wakeups.subscribe("cer-1");
        wakeups.flushed("cer-1");
        assert!(first.has_changed().unwrap() && second.has_changed().unwrap());
        drop((first, second));
        wakeups.flushed("cer-1");
        assert!(wakeups.lock().is_empty(), "no sender is kept for nobody");
        let _other = wakeups.subscribe("cer-2");
        assert_eq!(wakeups.lock().len(), 1);
    }
}
