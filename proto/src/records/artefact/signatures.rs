//! The signature checks of a bundle's S lines, spread over threads. They are
//! nearly all of a verification's time (one P-256 verification costs about a
//! hundred times the parsing of its line), so an auditor's million-command
//! bundle takes every core, not one, while memory stays bounded by the queue.
//!
//! Lines are read, and their structure checked, in order on the calling
//! thread; only the signature checks run elsewhere. A failure may be found on
//! any thread and in any order, so each is kept with its line and the lowest
//! line wins: the report names the first bad record, as a sequential check
//! would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};

use super::error::{ArtefactError, CommandProblem};
use crate::encoding::text::excerpt;
use crate::records::command::CommandVerifier;

/// S lines per hand-off to a thread: the hand-off is noise next to this many
/// verifications.
const BATCH: usize = 256;
/// Batches queued per thread: enough to keep every thread busy, and the bound
/// on memory whatever the bundle's size.
const QUEUED_PER_THREAD: usize = 4;
/// `first_failure` while no signature has failed.
const NO_FAILURE: u64 = u64::MAX;

/// One S line whose structure is sound, waiting for its signature check.
#[derive(Debug)]
pub(super) struct SignatureCheck {
    pub line: u64,
    pub sequence: u64,
    pub device_id: String,
    pub signature: [u8; 64],
}

impl SignatureCheck {
    fn run(&self, verifier: &CommandVerifier, digest: &[u8; 32]) -> Result<(), ArtefactError> {
        verifier
            .verify_command(digest, self.sequence, &self.device_id, &self.signature)
            .map_err(|error| ArtefactError::Command {
                line: self.line,
                sequence: self.sequence,
                device_id: excerpt(&self.device_id),
                problem: CommandProblem::Signature(error),
            })
    }
}

/// Where the reading loop hands each S line for its signature check.
pub(super) struct SignatureChecks<'a> {
    verifier: &'a CommandVerifier,
    digest: &'a [u8; 32],
    /// `None`: check on the calling thread as lines come.
    threads: Option<mpsc::SyncSender<Vec<SignatureCheck>>>,
    batch: Vec<SignatureCheck>,
    /// Line of the earliest signature failure found so far.
    first_failure: &'a AtomicU64,
    failure_here: Option<ArtefactError>,
}

impl SignatureChecks<'_> {
    /// Queues `check`. Returns `false` once some signature has failed: lines
    /// after it cannot be the first bad record, so reading may stop.
    pub fn push(&mut self, check: SignatureCheck) -> bool {
        match &self.threads {
            None => {
                if let Err(error) = check.run(self.verifier, self.digest) {
                    self.first_failure.fetch_min(check.line, Ordering::Relaxed);
                    self.failure_here = Some(error);
                }
            }
            Some(threads) => {
                self.batch.push(check);
                if self.batch.len() >= BATCH {
                    let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
                    // Fails only if every thread is gone, which `join` reports.
                    let _ = threads.send(batch);
                }
            }
        }
        self.first_failure.load(Ordering::Relaxed) == NO_FAILURE
    }

    fn flush(&mut self) {
        if let Some(threads) = &self.threads
            && !self.batch.is_empty()
        {
            let _ = threads.send(std::mem::take(&mut self.batch));
        }
    }
}

/// Runs `read`, which reads the S lines and pushes each to the checks, with
/// the signature checks on `threads` threads (1: on this one). Its `Ok(None)`
/// means it stopped early because a signature failed.
///
/// The result is `read`'s value when every signature verifies, else the
/// earliest failure by line, whether `read` or a signature check found it.
pub(super) fn check_signatures<T>(
    verifier: &CommandVerifier,
    digest: &[u8; 32],
    threads: usize,
    read: impl FnOnce(&mut SignatureChecks<'_>) -> Result<Option<T>, ArtefactError>,
) -> Result<T, ArtefactError> {
    let first_failure = AtomicU64::new(NO_FAILURE);
    if threads <= 1 {
        let mut checks = SignatureChecks {
            verifier,
            digest,
            threads: None,
            batch: Vec::new(),
            first_failure: &first_failure,
            failure_here: None,
        };
        let read = read(&mut checks);
        return earliest(read, checks.failure_here);
    }
    let (sender, receiver) = mpsc::sync_channel::<Vec<SignatureCheck>>(threads * QUEUED_PER_THREAD);
    let receiver = Mutex::new(receiver);
    let (receiver, first_failure_ref) = (&receiver, &first_failure);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut found: Option<ArtefactError> = None;
                    loop {
                        let next = receiver
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .recv();
                        let Ok(batch) = next else { break };
                        check_batch(&batch, verifier, digest, first_failure_ref, &mut found);
                    }
                    found
                })
            })
            .collect();
        let mut checks = SignatureChecks {
            verifier,
            digest,
            threads: Some(sender),
            batch: Vec::with_capacity(BATCH),
            first_failure: &first_failure,
            failure_here: None,
        };
        let read = read(&mut checks);
        checks.flush();
        // Closing the queue lets the threads finish what it holds and stop.
        drop(checks);
        let mut failure = None;
        for worker in workers {
            let found = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            failure = earlier(failure, found);
        }
        earliest(read, failure)
    })
}

fn check_batch(
    batch: &[SignatureCheck],
    verifier: &CommandVerifier,
    digest: &[u8; 32],
    first_failure: &AtomicU64,
    found: &mut Option<ArtefactError>,
) {
    for check in batch {
        // A line after a known failure cannot be the first bad record.
        if check.line > first_failure.load(Ordering::Relaxed) {
            return;
        }
        if let Err(error) = check.run(verifier, digest) {
            first_failure.fetch_min(check.line, Ordering::Relaxed);
            *found = earlier(found.take(), Some(error));
            return;
        }
    }
}

fn earlier(a: Option<ArtefactError>, b: Option<ArtefactError>) -> Option<ArtefactError> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.line() < a.line() { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn earliest<T>(
    read: Result<Option<T>, ArtefactError>,
    signature_failure: Option<ArtefactError>,
) -> Result<T, ArtefactError> {
    match (read, signature_failure) {
        (Ok(Some(value)), None) => Ok(value),
        (Ok(_), Some(failure)) => Err(failure),
        (Err(error), Some(failure)) if failure.line() < error.line() => Err(failure),
        (Err(error), _) => Err(error),
        (Ok(None), None) => Err(ArtefactError::Malformed {
            line: 0,
            reason: "verification stopped before the end without naming a bad record".to_owned(),
        }),
    }
}
