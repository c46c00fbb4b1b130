//! A message being received, written to disk as it arrives.
//!
//! SMTP hands the message body out in parts; each part is appended to a
//! spool file, so no session ever holds a whole message in memory. When the
//! message is complete, delivery copies the spool file into each mailbox and
//! the queue behind the trace fields it prepends; the spool file is removed
//! when the [`Spool`] is dropped, whether the message was stored, refused or
//! the client vanished.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One message's spool file.
#[derive(Debug)]
pub struct Spool {
    file: tempfile::NamedTempFile,
    size: u64,
    /// The first write that failed: later parts are dropped and the delivery
    /// fails with it, so the client gets `451` rather than a cut message.
    failed: Option<io::Error>,
}

impl Spool {
    /// A new spool file in `dir` (created if missing).
    pub fn create(dir: &Path) -> io::Result<Spool> {
        let file = match tempfile::Builder::new().prefix("spool.").tempfile_in(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir)?;
                tempfile::Builder::new().prefix("spool.").tempfile_in(dir)?
            }
            other => other?,
        };
        Ok(Spool {
            file,
            size: 0,
            failed: None,
        })
    }

    /// Appends a part of the message.
    pub fn append(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        match self.file.as_file_mut().write_all(bytes) {
            Ok(()) => self.size += bytes.len() as u64,
            Err(e) => self.failed = Some(e),
        }
    }

    /// Octets written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file, rewound for reading; the first write error if one happened.
    pub fn contents(&mut self) -> io::Result<&mut File> {
        if let Some(e) = self.failed.take() {
            self.failed = Some(io::Error::new(e.kind(), e.to_string()));
            return Err(e);
        }
        let file = self.file.as_file_mut();
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Where the file is (for messages).
    pub fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }
}

/// Removes spool files a previous run left (it was killed mid-message: no
/// client was ever told the message was accepted, so nothing is lost).
pub fn clean(dir: &Path) -> io::Result<usize> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in listing {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn parts_come_back_in_order_and_the_file_goes_with_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::create(&spool_dir).unwrap();
        spool.append(b"Subject: a\r\n");
        spool.append(b"\r\nbody\r\n");
        assert_eq!(spool.size(), 20);
        let mut back = Vec::new();
        spool.contents().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, b"Subject: a\r\n\r\nbody\r\n");
        let path = spool.path();
        assert!(path.exists());
        drop(spool);
        assert!(!path.exists());
    }

    #[test]
    fn clean_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("spool.x"), b"half a message").unwrap();
        assert_eq!(clean(dir.path()).unwrap(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(clean(&dir.path().join("missing")).unwrap(), 0);
    }
}
