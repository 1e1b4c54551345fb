//! Issue 19's io_uring experiment, used by scripts/bench.sh (its io_uring rows):
//! does batching the per-file system calls of the walk through io_uring
//! make hashing a tree of small files faster?
//!
//! The walk has two parts. Listing directories (`getdents64`) has no
//! io_uring operation in the kernels this runs on, so it is done once, the
//! same way for both, and timed apart. The per-file part is what io_uring
//! could batch, done here on all cores two ways over the same list:
//!
//! - `syscalls`: what provenant's walker does per file: `openat` relative
//!   to the directory (`O_NOFOLLOW|O_NONBLOCK|O_NOATIME|O_CLOEXEC`),
//!   `fstat` of the descriptor, `read` to the end, `close`, SHA-256;
//! - `io_uring`: per file four linked operations in one submission,
//!   `statx` (no follow) of the name, `openat` into a registered ("direct")
//!   descriptor, `read` of up to 64 KiB through it, `close`, with up to 64
//!   files (256 operations) in flight per thread, one `io_uring_enter` per
//!   batch; SHA-256 of each buffer as its read completes.
//!
//! The io_uring variant does the same work with one weakness provenant
//! cannot accept (and which it would have to pay for to land): `statx` by
//! name is not `fstat` of the opened descriptor, so a file swapped between
//! the two is described by the stat of one and the bytes of the other.
//! Direct descriptors cannot be `fstat`ed.
//!
//! Prints one JSON line: files, bytes, list_ms, then the best of RUNS for
//! each variant (ms), after one warm-up of each.
//!
//!   cargo run --release --example uring_walk -- DIR [RUNS]
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use io_uring::{opcode, squeue, types, IoUring};
use sha2::{Digest, Sha256};

const BUF: usize = 64 * 1024;
const IN_FLIGHT: usize = 64;

struct Tree {
    dirs: Vec<OwnedFd>,
    files: Vec<(u32, CString)>,
}

fn list(root: &std::path::Path) -> Tree {
    let mut t = Tree {
        dirs: Vec::new(),
        files: Vec::new(),
    };
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        let c = CString::new(d.as_os_str().as_bytes()).unwrap();
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        assert!(fd >= 0, "open {}", d.display());
        let idx = t.dirs.len() as u32;
        t.dirs.push(unsafe { OwnedFd::from_raw_fd(fd) });
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file() {
                t.files
                    .push((idx, CString::new(e.file_name().as_bytes()).unwrap()));
            }
        }
    }
    t
}

fn flags() -> i32 {
    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOATIME | libc::O_CLOEXEC
}

/// One thread's share: files i, i + n, i + 2n, ...
fn share(t: &Tree, i: usize, n: usize) -> impl Iterator<Item = &(u32, CString)> {
    t.files.iter().skip(i).step_by(n)
}

fn by_syscalls(t: &Tree, i: usize, n: usize) -> (u64, u8) {
    let mut buf = vec![0u8; BUF];
    let (mut bytes, mut x) = (0u64, 0u8);
    for (d, name) in share(t, i, n) {
        let fd = unsafe { libc::openat(t.dirs[*d as usize].as_raw_fd(), name.as_ptr(), flags()) };
        assert!(fd >= 0);
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
        let mut h = Sha256::new();
        loop {
            let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), BUF) };
            assert!(r >= 0);
            if r == 0 {
                break;
            }
            h.update(&buf[..r as usize]);
            bytes += r as u64;
        }
        unsafe { libc::close(fd) };
        x ^= h.finalize()[0];
    }
    (bytes, x)
}

fn by_uring(t: &Tree, i: usize, n: usize) -> (u64, u8) {
    let mut ring = IoUring::new((IN_FLIGHT * 4) as u32).expect("io_uring_setup");
    ring.submitter()
        .register_files_sparse(IN_FLIGHT as u32)
        .expect("register_files_sparse");
    let mut bufs = vec![0u8; BUF * IN_FLIGHT];
    let mut stx: Vec<libc::statx> = vec![unsafe { std::mem::zeroed() }; IN_FLIGHT];
    let mut free: Vec<usize> = (0..IN_FLIGHT).rev().collect();
    // Per slot: operations still to complete, bytes read.
    let mut pending = [0u8; IN_FLIGHT];
    let mut got = [0i32; IN_FLIGHT];
    let mut files = share(t, i, n);
    let no_statx = std::env::var_os("URING_NO_STATX").is_some();
    let (mut bytes, mut x, mut in_flight, mut more) = (0u64, 0u8, 0usize, true);
    while more || in_flight > 0 {
        while more && !free.is_empty() {
            let Some((d, name)) = files.next() else {
                more = false;
                break;
            };
            let s = free.pop().unwrap();
            let dir = types::Fd(t.dirs[*d as usize].as_raw_fd());
            let slot = types::DestinationSlot::try_from_slot_target(s as u32).unwrap();
            let ud = |op: u64| ((s as u64) << 8) | op;
            let ops = [
                opcode::Statx::new(dir, name.as_ptr(), (&mut stx[s] as *mut libc::statx).cast())
                    .flags(libc::AT_SYMLINK_NOFOLLOW)
                    .mask(libc::STATX_TYPE | libc::STATX_SIZE)
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(ud(0)),
                opcode::OpenAt::new(dir, name.as_ptr())
                    // O_CLOEXEC is refused (EINVAL) for direct descriptors,
                    // which are never in the process's table anyway.
                    .flags(flags() & !libc::O_CLOEXEC)
                    .file_index(Some(slot))
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(ud(1)),
                opcode::Read::new(
                    types::Fixed(s as u32),
                    bufs[s * BUF..].as_mut_ptr(),
                    BUF as u32,
                )
                .build()
                // A read shorter than the buffer (every file here) counts as
                // a failure for IO_LINK and would cancel the close.
                .flags(squeue::Flags::IO_HARDLINK)
                .user_data(ud(2)),
                opcode::Close::new(types::Fixed(s as u32))
                    .build()
                    .user_data(ud(3)),
            ];
            // URING_NO_STATX=1: the best case, without the stat (which the
            // kernel always hands to an io-wq worker thread).
            let ops = if no_statx { &ops[1..] } else { &ops[..] };
            unsafe { ring.submission().push_multiple(ops).expect("queue full") };
            pending[s] = ops.len() as u8;
            in_flight += 1;
        }
        ring.submit_and_wait(1).expect("io_uring_enter");
        for cqe in ring.completion() {
            let (s, op) = ((cqe.user_data() >> 8) as usize, cqe.user_data() & 0xff);
            let what = ["statx", "openat", "read", "close"][op as usize];
            assert!(cqe.result() >= 0, "{what}: errno {}", -cqe.result());
            if op == 2 {
                got[s] = cqe.result();
            }
            pending[s] -= 1;
            if pending[s] == 0 {
                // The stat said a regular file of this size; the read got it
                // all (the experiment's files are smaller than a buffer).
                if !no_statx {
                    assert_eq!(stx[s].stx_mode as u32 & libc::S_IFMT, libc::S_IFREG);
                    assert_eq!(stx[s].stx_size, got[s] as u64);
                }
                let b = &bufs[s * BUF..s * BUF + got[s] as usize];
                x ^= Sha256::digest(b)[0];
                bytes += b.len() as u64;
                free.push(s);
                in_flight -= 1;
            }
        }
    }
    (bytes, x)
}

fn on_all_cores(t: &Tree, f: fn(&Tree, usize, usize) -> (u64, u8)) -> (f64, u64, u8) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t0 = Instant::now();
    let parts: Vec<(u64, u8)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..n).map(|i| sc.spawn(move || f(t, i, n))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let (b, x) = parts.iter().fold((0, 0), |(b, x), p| (b + p.0, x ^ p.1));
    (ms, b, x)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let root = std::path::PathBuf::from(a.get(1).expect("usage: uring_walk DIR [RUNS]"));
    let runs: usize = a.get(2).map_or(3, |r| r.parse().expect("RUNS"));
    // Two runs in about thirty hung on this machine (kernel 6.18): one
    // thread waiting in io_cqring_wait, its io-wq worker idle. Whether the
    // bug is here or in the kernel was not found; the bench must not hang
    // on an experiment, so it prints N/A instead.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(120));
        eprintln!("uring_walk: no result after 120 s (the run hung; docs/bench.md)");
        std::process::exit(3);
    });
    let t0 = Instant::now();
    let t = list(&root);
    let list_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let mut best = [f64::MAX; 2];
    let mut seen = [(0u64, 0u8); 2];
    // Warm-up of each, then alternating, so drift hits both.
    for run in 0..=runs {
        for (k, f) in [
            by_syscalls as fn(&Tree, usize, usize) -> (u64, u8),
            by_uring,
        ]
        .into_iter()
        .enumerate()
        {
            let (ms, b, x) = on_all_cores(&t, f);
            seen[k] = (b, x);
            if run > 0 {
                best[k] = best[k].min(ms);
            }
        }
    }
    assert_eq!(seen[0], seen[1], "the two variants read different bytes");
    println!(
        "{{\"files\":{},\"bytes\":{},\"list_ms\":{:.1},\"syscalls_ms\":{:.1},\"io_uring_ms\":{:.1}}}",
        t.files.len(),
        seen[0].0,
        list_ms,
        best[0],
        best[1]
    );
}
