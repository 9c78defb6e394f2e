//! Replacing a small file in a directory others may write to (the run dir, /var/run)
//! so that a reader never sees half a file and a planted symlink cannot redirect the
//! write: the bytes go to a fresh temporary name, created exclusively and never through
//! a symlink (`O_CREAT|O_EXCL|O_NOFOLLOW`), then renamed over the target, and a rename
//! replaces a symlink rather than following it. No fsync: these files live on tmpfs
//! or are rewritten at every start.

use crate::atomic64::AtomicU64;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Mode of a file any local user may read (no secret in it: status, PID).
pub const PUBLIC: u32 = 0o644;
/// Mode of a file only qlship's user may read.
pub const PRIVATE: u32 = 0o600;

/// Writes `bytes` to `dir/name`, replacing it atomically, created with `mode` (less the
/// umask).
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = fresh_name(dir, name);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes));
    let placed = written.and_then(|()| std::fs::rename(&tmp, dir.join(name)));
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed
}

/// `dir/.name.PID.N.NANOS.tmp`: unique within the process (N), across processes (PID)
/// and hard to guess ahead (NANOS), so nothing can be planted at it.
fn fresh_name(dir: &Path, name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    dir.join(format!(".{name}.{}.{n}.{nanos}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn a_planted_symlink_redirects_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        // At the target and at the temporary name the status writer once used.
        symlink(&victim, dir.path().join("status.json")).unwrap();
        symlink(&victim, dir.path().join(".status.json.tmp")).unwrap();
        write_atomically(dir.path(), "status.json", b"{}", PUBLIC).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let placed = std::fs::symlink_metadata(dir.path().join("status.json")).unwrap();
        assert!(placed.file_type().is_file());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("status.json")).unwrap(),
            "{}"
        );
        // Nothing left behind but the old planted link.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".status.json.tmp", "status.json", "victim"]);
    }

    #[test]
    fn private_files_are_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_atomically(dir.path(), "m", b"first, longer", PRIVATE).unwrap();
        write_atomically(dir.path(), "m", b"second", PRIVATE).unwrap();
        let path = dir.path().join("m");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        assert_ne!(fresh_name(dir.path(), "m"), fresh_name(dir.path(), "m"));
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails.
        std::fs::create_dir(dir.path().join("busy")).unwrap();
        std::fs::write(dir.path().join("busy/x"), "").unwrap();
        assert!(write_atomically(dir.path(), "busy", b"x", PUBLIC).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
