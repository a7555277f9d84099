//! What a recovery keeps in memory beside the store: the holding key, where
//! artefacts go, and each open ceremony's ephemeral age key, which never
//! touches the disk (after a restart, approvers seal to a new one).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use rkm_proto::envelope;

use crate::hsm::HoldingKey;

/// Recovery state that lives beside the store: the holding key, where
/// artefacts go, and each open ceremony's ephemeral age key (memory only).
pub struct RecoveryRuntime {
    pub holding_key: HoldingKey,
    pub artefact_dir: PathBuf,
    pub artefact_wakeups: crate::ceremony::artefacts::ArtefactWakeups,
    ceremony_keys: Mutex<HashMap<String, age::x25519::Identity>>,
}

impl std::fmt::Debug for RecoveryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryRuntime")
            .field("artefact_dir", &self.artefact_dir)
            .finish_non_exhaustive()
    }
}

impl RecoveryRuntime {
    pub fn new(holding_key: HoldingKey, artefact_dir: PathBuf) -> Self {
        Self {
            holding_key,
            artefact_dir,
            artefact_wakeups: Default::default(),
            ceremony_keys: Mutex::new(HashMap::new()),
        }
    }

    /// The age recipient of the ceremony's key, made on first use (and anew
    /// after a restart: approvers then fetch the new recipient).
    pub fn recipient(&self, ceremony_id: &str) -> String {
        let mut keys = self.ceremony_keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.entry(ceremony_id.to_owned())
            .or_insert_with(age::x25519::Identity::generate)
            .to_public()
            .to_string()
    }

    pub(super) fn open_sealed(
        &self,
        ceremony_id: &str,
        sealed: &[u8],
    ) -> Option<Result<envelope::EnvelopeContents, envelope::EnvelopeError>> {
        let keys = self.ceremony_keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(ceremony_id)
            .map(|identity| envelope::open(sealed, identity))
    }

    pub fn forget(&self, ceremony_id: &str) {
        self.ceremony_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(ceremony_id);
    }
}
