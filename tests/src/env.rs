//! Points this process's SoftHSM2 at a test token.
//!
//! SoftHSM2 reads its configuration only from the `SOFTHSM2_CONF` environment
//! variable, at `C_Initialize`. Tests that use the HSM layer in-process must
//! therefore set it, and `std::env::set_var` is `unsafe` because another
//! thread may read the environment at the same time. This is the one place
//! that does it. It is sound under cargo-nextest, which runs every test in its
//! own process, as long as it is called first in the test, before the test
//! starts any thread.

use crate::SoftHsmToken;

/// Makes this process's SoftHSM2 use `token`'s configuration.
pub fn use_token_in_this_process(token: &SoftHsmToken) {
    // SAFETY: called at the start of a test, before the test spawns threads;
    // nextest gives each test its own process, so no other test reads the
    // environment concurrently (see the module documentation).
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", token.config_file());
    }
}
