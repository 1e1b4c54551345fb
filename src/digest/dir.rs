//! Directories as the walk uses them: opened relative to their parent,
//! listed with `getdents64` into one buffer, their entries opened relative
//! to them. For 100k files that saves, per file, resolving an absolute path
//! of a dozen components and a heap allocation or three (what
//! `std::fs::read_dir` and `DirEntry::path` cost), and no component above a
//! file can be swapped for a link between listing and opening.
use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The kind of a directory entry, from `d_type` (or `fstatat` when the file
/// system does not fill it in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Dir,
    File,
    Link,
    Fifo,
    Socket,
    Char,
    Block,
}

impl Kind {
    pub fn of_mode(mode: libc::mode_t) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Link,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::Char,
            libc::S_IFBLK => Kind::Block,
            _ => Kind::File,
        }
    }

    /// The special-file kind of a FIFO, socket or device; `None` for a
    /// file, directory or link.
    pub fn special(self) -> Option<super::SpecialKind> {
        use super::SpecialKind as S;
        Some(match self {
            Kind::Fifo => S::Fifo,
            Kind::Socket => S::Socket,
            Kind::Char => S::CharDevice,
            Kind::Block => S::BlockDevice,
            Kind::File | Kind::Dir | Kind::Link => return None,
        })
    }

    fn of_dtype(t: u8) -> Option<Kind> {
        Some(match t {
            libc::DT_DIR => Kind::Dir,
            libc::DT_REG => Kind::File,
            libc::DT_LNK => Kind::Link,
            libc::DT_FIFO => Kind::Fifo,
            libc::DT_SOCK => Kind::Socket,
            libc::DT_CHR => Kind::Char,
            libc::DT_BLK => Kind::Block,
            _ => return None,
        })
    }
}

pub(super) struct Dir(OwnedFd);

/// The names of one directory: NUL-terminated, back to back, with their
/// `d_type`; `.` and `..` left out.
pub(super) struct Listing {
    names: Vec<u8>,
    items: Vec<(u32, u32, u8)>,
}

impl Listing {
    /// (name with its NUL, `d_type`).
    pub fn iter(&self) -> impl Iterator<Item = (&CStr, u8)> + '_ {
        self.items.iter().filter_map(|&(at, len, t)| {
            let raw = &self.names[at as usize..(at + len) as usize + 1];
            CStr::from_bytes_with_nul(raw).ok().map(|c| (c, t))
        })
    }
}

/// Set once the kernel refused `O_NOATIME` (we do not own the files and
/// lack CAP_FOWNER); not asked again.
static NOATIME_DENIED: AtomicBool = AtomicBool::new(false);

fn cvt(fd: libc::c_int) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Dir {
    /// A directory the caller opened (without following links, say).
    pub fn from_fd(fd: OwnedFd) -> Dir {
        Dir(fd)
    }

    /// The root of a walk: the user named it, so a link here is followed.
    pub fn open(path: &Path) -> std::io::Result<Dir> {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: NUL-terminated path, flag arguments.
        cvt(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })
        .map(Dir)
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.0.as_fd()
    }

    /// A subdirectory; a link in its place is refused, never followed.
    pub fn open_dir(&self, name: &CStr) -> std::io::Result<Dir> {
        // SAFETY: valid directory fd, NUL-terminated name.
        cvt(unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })
        .map(Dir)
    }

    /// A file to hash: never through a link; `O_NONBLOCK` so that a FIFO
    /// swapped in after listing cannot block the open; `O_NOATIME` when
    /// allowed, so that looking does not change what is looked at.
    pub fn open_file(&self, name: &CStr) -> std::io::Result<File> {
        let base = libc::O_RDONLY | super::HASH_OPEN_FLAGS;
        if !NOATIME_DENIED.load(Ordering::Relaxed) {
            // SAFETY: valid directory fd, NUL-terminated name.
            let fd =
                unsafe { libc::openat(self.0.as_raw_fd(), name.as_ptr(), base | libc::O_NOATIME) };
            if fd >= 0 {
                // SAFETY: a fresh descriptor nobody else owns.
                return Ok(unsafe { File::from_raw_fd(fd) });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EPERM) {
                return Err(e);
            }
            NOATIME_DENIED.store(true, Ordering::Relaxed);
        }
        // SAFETY: valid directory fd, NUL-terminated name.
        cvt(unsafe { libc::openat(self.0.as_raw_fd(), name.as_ptr(), base) }).map(File::from)
    }

    pub fn read_link(&self, name: &CStr) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe {
                libc::readlinkat(
                    self.0.as_raw_fd(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = n as usize;
            if n < buf.len() {
                buf.truncate(n);
                return Ok(buf);
            }
            let bigger = buf.len() * 2;
            buf.resize(bigger, 0);
        }
    }

    /// `name`'s own metadata (a link's, not its target's).
    pub fn stat_of(&self, name: &CStr) -> std::io::Result<libc::stat> {
        // SAFETY: stat is plain data; fstatat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::fstatat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st)
    }

    /// The kind of `name`, for file systems that leave `d_type` unknown.
    pub fn kind_of(&self, name: &CStr) -> std::io::Result<Kind> {
        self.stat_of(name).map(|st| Kind::of_mode(st.st_mode))
    }

    /// The entry's kind from the listing, or asked for.
    pub fn kind(&self, name: &CStr, d_type: u8) -> std::io::Result<Kind> {
        match Kind::of_dtype(d_type) {
            Some(k) => Ok(k),
            None => self.kind_of(name),
        }
    }

    pub fn list(&self) -> std::io::Result<Listing> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 32 * 1024]);
        }
        let mut out = Listing {
            names: Vec::new(),
            items: Vec::new(),
        };
        BUF.with(|buf| -> std::io::Result<()> {
            let mut buf = buf.borrow_mut();
            loop {
                // SAFETY: buf is valid for buf.len() bytes; getdents64
                // writes whole records into it.
                let n = unsafe {
                    libc::syscall(
                        libc::SYS_getdents64,
                        self.0.as_raw_fd(),
                        buf.as_mut_ptr(),
                        buf.len(),
                    )
                };
                if n < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if n == 0 {
                    return Ok(());
                }
                parse(&buf[..n as usize], &mut out);
            }
        })?;
        Ok(out)
    }
}

/// `struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type;
/// char d_name[]; }`, records back to back.
fn parse(buf: &[u8], out: &mut Listing) {
    let mut at = 0usize;
    while at + 19 <= buf.len() {
        let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
        if reclen == 0 || at + reclen > buf.len() {
            break;
        }
        let d_type = buf[at + 18];
        let raw = &buf[at + 19..at + reclen];
        let len = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        let name = &raw[..len];
        if name != b"." && name != b".." {
            let start = out.names.len() as u32;
            out.names.extend_from_slice(name);
            out.names.push(0);
            out.items.push((start, len as u32, d_type));
        }
        at += reclen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_opens_relative_to_the_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        std::fs::write(t.path().join("sub/f"), b"x").unwrap();
        std::fs::write(t.path().join("a \u{e4}"), b"y").unwrap();
        std::os::unix::fs::symlink("sub", t.path().join("l")).unwrap();
        for i in 0..2000 {
            std::fs::write(t.path().join(format!("n{i:04}")), b"").unwrap();
        }
        let d = Dir::open(t.path()).unwrap();
        let listing = d.list().unwrap();
        let mut names: Vec<(Vec<u8>, Kind)> = listing
            .iter()
            .map(|(n, ty)| (n.to_bytes().to_vec(), d.kind(n, ty).unwrap()))
            .collect();
        names.sort();
        assert_eq!(names.len(), 2003, "more than one getdents64 buffer");
        assert_eq!(names[0], ("a \u{e4}".as_bytes().to_vec(), Kind::File));
        assert_eq!(names[1], (b"l".to_vec(), Kind::Link));
        assert_eq!(names[2002], (b"sub".to_vec(), Kind::Dir));
        let l = c"l";
        assert_eq!(d.read_link(l).unwrap(), b"sub");
        assert!(d.open_dir(l).is_err(), "a link is never followed");
        assert!(d.open_file(l).is_err());
        let sub = d.open_dir(c"sub").unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut sub.open_file(c"f").unwrap(), &mut s).unwrap();
        assert_eq!(s, "x");
    }
}
