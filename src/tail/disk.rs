//! The reader's files on disk: what queue_log's directory holds, QUEUE_LOG and its
//! rotated generations, each as the facts [`crate::machine::generations`] decides on
//! (identity, rank, length, first line); and reading them, compressed ones through an
//! inflate.

use super::files::{Entry, Files, Handle};
use crate::gunzip::GzReader;
use crate::journal::FileId;
use crate::machine::generations::{self, Gen, Rank, HEAD_MAX};
use std::fs::{File, Metadata};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The real directory. It remembers the facts of files already looked at, by identity,
/// modification time and size: a compressed generation is inflated once to learn its
/// first line, not at every poll.
pub struct Disk {
    seen: Vec<(FileId, i64, u64, Gen)>,
    epoch: Instant,
}

impl Default for Disk {
    fn default() -> Disk {
        Disk {
            seen: Vec::new(),
            epoch: Instant::now(),
        }
    }
}

impl Files for Disk {
    type Handle = DiskFile;

    /// Files that vanish while listing are left out (they are looked at again).
    fn list(&mut self, path: &Path) -> io::Result<Vec<Entry>> {
        let mut found = Vec::new();
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => found.push((path.to_owned(), meta, Rank::Live, false)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for (name, meta) in siblings(path)? {
            let suffix = suffix_of(path, &name);
            if let Some((rank, gz)) = generations::rank_of(&suffix) {
                found.push((name, meta, rank, gz));
            }
        }
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (name, meta, rank, gz) in found {
            let key = (id_of(&meta), mtime_ns(&meta), meta.len());
            let known = self
                .seen
                .iter()
                .find(|(id, m, l, _)| (*id, *m, *l) == key)
                .map(|(.., g)| g.clone());
            let gen = match known {
                Some(g) => Gen { rank, ..g },
                None => match facts(&name, &meta, rank.clone(), gz) {
                    Ok(Some(g)) => g,
                    Ok(None) => continue,
                    // Gone meanwhile: looked at again at the next listing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    // A rotated-looking file not ours to read (a copy an admin made with
                    // other rights) is left out; QUEUE_LOG itself is the operator's to
                    // fix, and the error says how.
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied && rank != Rank::Live => {
                        continue
                    }
                    Err(e) => return Err(e),
                },
            };
            seen.push((key.0, key.1, key.2, gen.clone()));
            out.push(Entry { name, gen });
        }
        self.seen = seen;
        Ok(out)
    }

    fn open(&mut self, name: &Path, gz: bool) -> io::Result<DiskFile> {
        let file = File::open(name)?;
        let body = if gz {
            Body::Gz {
                text: Box::new(GzReader::new(BufReader::new(file.try_clone()?))),
                window: Vec::new(),
                window_at: 0,
            }
        } else {
            Body::Plain
        };
        let id = id_of(&file.metadata()?);
        Ok(DiskFile { file, id, body })
    }

    fn id_at(&mut self, path: &Path) -> io::Result<Option<FileId>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(id_of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

pub struct DiskFile {
    file: File,
    id: FileId,
    body: Body,
}

/// How its bytes are read.
enum Body {
    Plain,
    /// Inflated front to back; `window` holds the text from `window_at` on that was
    /// inflated and not yet passed (reading again from before it inflates anew).
    Gz {
        text: Box<GzReader<BufReader<File>>>,
        window: Vec<u8>,
        window_at: u64,
    },
}

impl Handle for DiskFile {
    fn id(&self) -> FileId {
        self.id
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Body::Gz {
            text,
            window,
            window_at,
        } = &mut self.body
        else {
            return read_some(&self.file, buf, offset);
        };
        if offset < *window_at {
            **text = GzReader::new(BufReader::new(self.file.try_clone()?));
            window.clear();
            *window_at = 0;
        }
        // Pass what lies before `offset`, then inflate until `buf` can be filled.
        loop {
            let skip = (offset - *window_at).min(window.len() as u64) as usize;
            window.drain(..skip);
            *window_at += skip as u64;
            if *window_at == offset && window.len() >= buf.len() {
                break;
            }
            let mut more = [0u8; 8192];
            let n = loop {
                match text.read(&mut more) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            if n == 0 {
                break;
            }
            window.extend_from_slice(&more[..n]);
        }
        if *window_at != offset {
            return Ok(0);
        }
        let n = window.len().min(buf.len());
        buf[..n].copy_from_slice(&window[..n]);
        Ok(n)
    }

    fn text_len(&self) -> io::Result<Option<u64>> {
        match self.body {
            Body::Gz { .. } => Ok(None),
            Body::Plain => Ok(Some(self.file.metadata()?.len())),
        }
    }

    fn mtime_ns(&self) -> io::Result<i64> {
        Ok(mtime_ns(&self.file.metadata()?))
    }

    fn sync_handle(&self) -> Option<File> {
        self.file.try_clone().ok()
    }
}

/// None for a `.gz` that is not gzip (a copy someone named so).
fn facts(name: &Path, meta: &Metadata, rank: Rank, gz: bool) -> io::Result<Option<Gen>> {
    let file = File::open(name)?;
    let mut head = [0u8; HEAD_MAX];
    let (n, len) = if gz {
        let mut magic = [0u8; 3];
        if read_some(&file, &mut magic, 0)? < 3 || !crate::gunzip::is_gzip(&magic) {
            return Ok(None);
        }
        // The gzip trailer's ISIZE: the length of what it holds (mod 4 GiB).
        let mut isize = [0u8; 4];
        read_some(&file, &mut isize, meta.len().saturating_sub(4))?;
        let mut text = GzReader::new(BufReader::new(file));
        let mut n = 0;
        while n < head.len() {
            match text.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        (n, u64::from(u32::from_le_bytes(isize)))
    } else {
        (read_some(&file, &mut head, 0)?, meta.len())
    };
    let (head, first_time) = generations::head_of(&head[..n]);
    Ok(Some(Gen {
        id: id_of(meta),
        rank,
        gz,
        len,
        head,
        first_time,
        mtime_ns: mtime_ns(meta),
    }))
}

fn suffix_of(path: &Path, name: &Path) -> String {
    let base = path.file_name().unwrap_or_default().len();
    let name = name.file_name().unwrap_or_default().to_string_lossy();
    name.get(base..).unwrap_or_default().to_owned()
}

/// Files beside QUEUE_LOG whose names extend its name (`queue_log.1`, `queue_log.bak`):
/// the candidates for rotated generations.
pub fn siblings(path: &Path) -> io::Result<Vec<(PathBuf, Metadata)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let base = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() <= base.len() || !name.starts_with(&base) {
            continue;
        }
        match entry.metadata() {
            Ok(meta) if meta.is_file() => out.push((entry.path(), meta)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The current size of the file with identity `id`: QUEUE_LOG itself or a rotated
/// sibling. None when it is nowhere to be found.
pub fn size_of(path: &Path, id: FileId) -> Option<u64> {
    if let Ok(m) = std::fs::metadata(path) {
        if id_of(&m) == id {
            return Some(m.len());
        }
    }
    siblings(path)
        .ok()?
        .into_iter()
        .find(|(_, m)| id_of(m) == id)
        .map(|(_, m)| m.len())
}

pub fn read_some(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub fn id_of(meta: &Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

/// Modification time in nanoseconds (saturating).
pub fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}
