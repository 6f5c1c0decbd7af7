//! Compaction's write-aside-and-rename: the new content goes to a fresh file named
//! `<prefix><random digits>` in the root directory, is made durable, then replaces the
//! live file in one rename, so a crash leaves either the old or the new file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::env::{os_error, Shared};
use super::fs::FsFile;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Decimal digits that differ between calls and processes.
fn random_digits(sh: &Shared) -> String {
    let mut x = sh.now().as_nanos() as u64
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // xorshift* to spread the bits.
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) as u32).to_string()
}

fn create_temp(sh: &Shared, prefix: &str) -> Result<(PathBuf, Box<dyn FsFile>), String> {
    let mut last = None;
    for _ in 0..16 {
        let path = sh.root.join(format!("{prefix}{}", random_digits(sh)));
        match sh.fs.create_new(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(path),
            Err(e) => return Err(os_error("open", &path, &e)),
        }
    }
    let path = last.unwrap_or_else(|| sh.root.join(prefix));
    Err(format!("open {}: file exists", path.display()))
}

/// Replaces `target` with `data` (version header included) and returns `target`
/// opened for appending.
pub(crate) fn replace(
    sh: &Shared,
    prefix: &str,
    data: &[u8],
    target: &Path,
) -> Result<Box<dyn FsFile>, String> {
    let (tmp, mut file) = create_temp(sh, prefix)?;
    let written = file
        .append(data)
        .and_then(|()| file.sync())
        .map_err(|e| os_error("write", &tmp, &e));
    drop(file);
    let renamed = written.and_then(|()| {
        sh.fs.rename(&tmp, target).map_err(|e| {
            format!(
                "rename {} {}: {}",
                tmp.display(),
                target.display(),
                super::env::reason(&e)
            )
        })
    });
    if let Err(e) = renamed {
        let _ = sh.fs.remove_file(&tmp);
        return Err(e);
    }
    sh.fs.open(target).map_err(|e| os_error("open", target, &e))
}
