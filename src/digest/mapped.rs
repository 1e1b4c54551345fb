//! Hashing large files through `mmap` instead of `read`.
//!
//! On the machines we measured, copying page-cache pages into a buffer costs
//! nearly as much CPU as SHA-256 itself (SHA-NI hashes ~1.4 GB/s per core,
//! `read` copies ~1.7 GB/s), so with every core busy a read-based hasher
//! tops out near half the openssl ceiling. Mapping the pages removes the
//! copy.
//!
//! The catch with `mmap`: if another process truncates the file while we
//! hash it, touching a page past the new end raises SIGBUS, which would
//! kill the sidecar; a build could stop its own attestation that way. So
//! a SIGBUS handler checks whether the faulting address lies in the window
//! this thread is hashing; if so it maps zero pages over the rest of the
//! window, records the fault, and lets the instruction retry. The caller
//! then reports "changed while being hashed", exactly as the read path does
//! for a file whose size changed. Faults anywhere else get the default
//! action, as if no handler were installed.
use std::cell::Cell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// Files smaller than this are read: for them `mmap` + `munmap` cost more
/// than the copy they save.
pub const MIN_MAPPED: u64 = 1 << 20;
/// Mapped at a time, so a 10 GB file does not add 10 GB to our address
/// space or resident set.
const WINDOW: usize = 16 << 20;

thread_local! {
    // Const-initialised Cells of plain integers: reading them from the
    // signal handler is a plain TLS load, no lazy initialisation.
    static WINDOW_START: Cell<usize> = const { Cell::new(0) };
    static WINDOW_LEN: Cell<usize> = const { Cell::new(0) };
    static FAULTED: Cell<bool> = const { Cell::new(false) };
}

static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let start = WINDOW_START.with(|c| c.get());
    let len = WINDOW_LEN.with(|c| c.get());
    if len != 0 && addr >= start && addr < start + len {
        let page = page_size();
        let from = addr & !(page - 1);
        // SAFETY: [from, start + len) lies inside this thread's own
        // mapping; replacing it with anonymous zero pages is what makes
        // the faulting load succeed on retry. mmap is a raw system call.
        let r = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                start + len - from,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if r != libc::MAP_FAILED {
            FAULTED.with(|c| c.set(true));
            return;
        }
    }
    // Not ours: restore the default action; returning re-executes the
    // faulting instruction, which then terminates the process as usual.
    // SAFETY: signal(2) with SIG_DFL is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}

/// Installs the SIGBUS handler once; false if that failed (then callers
/// fall back to `read`).
fn install() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler
        // only touches its own thread's state and raw system calls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            let ok = libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) == 0;
            INSTALLED.store(ok, Ordering::SeqCst);
        }
    });
    INSTALLED.load(Ordering::SeqCst)
}

/// Feeds the first `size` bytes of `f` to `feed`, window by window.
/// Returns `Ok(false)` when mapping is not possible here (the caller reads
/// instead), and an error if the file shrank while being hashed.
pub fn feed_mapped(f: &File, size: u64, mut feed: impl FnMut(&[u8])) -> std::io::Result<bool> {
    if !install() {
        return Ok(false);
    }
    let mut off: u64 = 0;
    while off < size {
        let len = ((size - off) as usize).min(WINDOW);
        // SAFETY: a fresh read-only private mapping of our own fd; we only
        // read it, and unmap it before returning.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                f.as_raw_fd(),
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            if off == 0 {
                return Ok(false);
            }
            return Err(std::io::Error::last_os_error());
        }
        WINDOW_START.with(|c| c.set(p as usize));
        FAULTED.with(|c| c.set(false));
        WINDOW_LEN.with(|c| c.set(len));
        // SAFETY: p..p+len is mapped readable until the munmap below; a
        // truncation turns the tail into zero pages (see on_sigbus), never
        // into unmapped memory.
        let slice = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
        feed(slice);
        WINDOW_LEN.with(|c| c.set(0));
        let faulted = FAULTED.with(|c| c.replace(false));
        // SAFETY: unmapping exactly what we mapped.
        unsafe {
            libc::munmap(p, len);
        }
        if faulted {
            return Err(std::io::Error::other("file truncated while being hashed"));
        }
        off += len as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn mapped_hash_equals_read_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        // Three windows and a bit, not page aligned.
        let data: Vec<u8> = (0..(WINDOW * 3 + 12345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let f = File::open(&p).unwrap();
        let mut sha = Sha256::new();
        assert!(feed_mapped(&f, data.len() as u64, |b| sha.update(b)).unwrap());
        assert_eq!(sha.finalize(), Sha256::digest(&data));
    }

    #[test]
    fn truncation_while_hashing_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![1u8; 4 << 20]).unwrap();
        let f = File::open(&p).unwrap();
        let mut touched = 0u64;
        let err = feed_mapped(&f, 4 << 20, |b| {
            // Another writer truncates the file under us, then we read
            // every byte of the window: past the new end that is SIGBUS.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(4096)
                .unwrap();
            touched = b.iter().map(|x| *x as u64).sum();
        })
        .unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // The first page was still there; the rest read as zeros.
        assert_eq!(touched, 4096);
        // And a fault outside any window still is not swallowed: only the
        // handler's own window state decides, which is clear now.
        assert_eq!(WINDOW_LEN.with(|c| c.get()), 0);
    }
}
