//! How the process's memory allocator is set up: call [`tune`] first thing in `main`, before
//! the async runtime starts its threads.
//!
//! glibc's malloc gives threads arenas of their own, up to eight per core, and keeps what each
//! arena once held. A gateway's allocations move between the runtime's threads (a webhook read
//! on one, recorded on another, relayed on a third), so each arena fills with the holes of the
//! others' frees, and resident memory grows with traffic that leaves nothing behind. Measured
//! with `casebridge-bench --memory-only` (20,000 SMS webhooks, figures in the README): glibc's
//! default grew 29 -> 69 MiB from 10 senders and to 82 MiB from 20,000 new ones; one arena,
//! 55 and 59 MiB; mimalloc started at 57 MiB and reached 113 MiB.

/// Limits glibc's malloc to two arenas. Does nothing where the C library is not glibc, nor when
/// `MALLOC_ARENA_MAX` is set (the administrator's choice wins).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // The one unsafe call in the workspace: a C function with no pointers, setting one
        // malloc parameter; glibc documents it as safe to call at any time.
        #[allow(unsafe_code)]
        // SAFETY: mallopt takes two integers and touches no memory of ours.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// How many arenas glibc's malloc may use.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;
