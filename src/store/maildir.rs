//! Maildir on disk: `<root>/<folder>/{tmp,new,cur}`, one file per message.
//!
//! A message is written to `tmp/`, flushed, then renamed into `new/`, so a
//! reader sees it whole or not at all, and a crash never leaves half a message
//! in a mailbox. The file name is the message's unique id (POP3 `UIDL`): it
//! starts with the delivery time in nanoseconds, so names sort in delivery
//! order and are never reused, and it carries the size (`,S=`), so opening a
//! mailbox of 100,000 messages needs a directory listing and no `stat`.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::name::mailbox_folder;

/// A store failure, naming the mailbox.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The filesystem refused.
    #[error("mailbox {mailbox}: {source}")]
    Io {
        /// The mailbox address.
        mailbox: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One stored message as POP3 and the grader see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Unique, stable id (the Maildir base name).
    pub uid: String,
    /// Where the message is.
    pub path: PathBuf,
    /// Size in octets, CRLF line ends: exactly what `RETR` sends before dot-stuffing.
    pub size: u64,
}

/// Where a delivery landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The new message's unique id.
    pub uid: String,
    /// Its file.
    pub path: PathBuf,
}

/// The mailboxes of one server. Cheap to clone; clones share locks and change notices.
#[derive(Clone)]
pub struct Mailstore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    fsync: bool,
    seq: AtomicU64,
    /// Mailboxes open in a POP3 session. A `std` mutex: held for a set insert, never across `.await`.
    locked: Mutex<HashSet<String>>,
    /// Bumped after every delivery or deletion, so waiters wake on facts, not timers.
    changes: watch::Sender<u64>,
}

/// Holds a mailbox open for one POP3 session; dropping it releases the mailbox
/// however the session ends.
pub struct MailboxLock {
    store: Mailstore,
    folder: String,
}

impl Drop for MailboxLock {
    fn drop(&mut self) {
        self.store
            .inner
            .locked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.folder);
    }
}

impl Mailstore {
    /// The store under `root`; folders are created on first delivery. With
    /// `fsync`, every delivery is flushed to the disk before it is
    /// acknowledged; without it, a delivery survives a crash of the process
    /// (the kernel has it) but not of the machine.
    pub fn open(root: impl Into<PathBuf>, fsync: bool) -> Mailstore {
        let root = root.into();
        Mailstore {
            inner: Arc::new(Inner {
                root,
                fsync,
                seq: AtomicU64::new(0),
                locked: Mutex::new(HashSet::new()),
                changes: watch::channel(0).0,
            }),
        }
    }

    /// The folder that holds `address`'s mail.
    pub fn mailbox_path(&self, address: &str) -> PathBuf {
        self.inner.root.join(mailbox_folder(address))
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Stores `message` in `address`'s mailbox. Bare LF line ends become CRLF,
    /// so the stored size is the size POP3 reports.
    pub fn deliver(&self, address: &str, message: &[u8]) -> Result<Delivered, StoreError> {
        let err = |source| StoreError::Io {
            mailbox: address.to_string(),
            source,
        };
        let dir = self.mailbox_path(address);
        let normalized = crlf(message);
        let uid = self.unique_id();
        let name = format!("{uid},S={}", normalized.len());
        let tmp = dir.join("tmp").join(&name);
        let new = dir.join("new").join(&name);
        // The folders exist after the first delivery: create them only when needed,
        // which saves three lookups a message.
        let mut file = match fs::File::create(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // `tmp/` last: whoever finds `tmp/` may rely on `new/` and `cur/`.
                for sub in ["new", "cur", "tmp"] {
                    fs::create_dir_all(dir.join(sub)).map_err(err)?;
                }
                fs::File::create(&tmp).map_err(err)?
            }
            other => other.map_err(err)?,
        };
        let written = file.write_all(&normalized).and_then(|_| {
            if self.inner.fsync {
                file.sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(err(e));
        }
        drop(file);
        if let Err(e) = fs::rename(&tmp, &new) {
            // `new/` removed by hand while we run: make it again, once.
            if e.kind() != io::ErrorKind::NotFound || fs::create_dir_all(dir.join("new")).is_err() {
                let _ = fs::remove_file(&tmp);
                return Err(err(e));
            }
            fs::rename(&tmp, &new).map_err(err)?;
        }
        if self.inner.fsync {
            fs::File::open(dir.join("new"))
                .and_then(|d| d.sync_all())
                .map_err(err)?;
        }
        self.inner.changes.send_modify(|n| *n += 1);
        Ok(Delivered { uid, path: new })
    }

    fn unique_id(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        format!("{nanos:020}.P{}Q{seq}.mailnet", std::process::id())
    }

    /// Moves a message from `new/` to `cur/` (flagged seen, as Maildir readers
    /// do once a message was read) and returns it with its new path. A message
    /// already in `cur/` is returned as it is.
    pub fn mark_seen(&self, message: &StoredMessage) -> io::Result<StoredMessage> {
        let Some(dir) = message.path.parent() else {
            return Ok(message.clone());
        };
        if dir.file_name().map(|n| n != "new").unwrap_or(true) {
            return Ok(message.clone());
        }
        let Some(name) = message.path.file_name().and_then(|n| n.to_str()) else {
            return Ok(message.clone());
        };
        let cur = dir.with_file_name("cur");
        let target = cur.join(format!("{name}:2,S"));
        match fs::rename(&message.path, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&cur)?;
                fs::rename(&message.path, &target)?;
            }
            Err(e) => return Err(e),
        }
        Ok(StoredMessage {
            path: target,
            ..message.clone()
        })
    }

    /// Every message of a mailbox in delivery order, oldest first: what a POP3
    /// session lists and what the grader looks at. Nothing moves here, so
    /// opening a mailbox of 100,000 messages costs one directory listing; a
    /// message moves from `new/` to `cur/` when it is retrieved
    /// ([`Mailstore::mark_seen`]).
    pub fn messages(&self, address: &str) -> Result<Vec<StoredMessage>, StoreError> {
        let dir = self.mailbox_path(address);
        let err = |source| StoreError::Io {
            mailbox: address.to_string(),
            source,
        };
        let mut all = Vec::new();
        for sub in ["cur", "new"] {
            match list_dir(&dir.join(sub)) {
                Ok(found) => all.extend(found),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(e)),
            }
        }
        // Ids start with the delivery time, zero-padded: their order is delivery order.
        all.sort_unstable_by(|a, b| a.uid.cmp(&b.uid));
        Ok(all)
    }

    /// How many messages `address` holds now.
    pub fn count(&self, address: &str) -> usize {
        self.messages(address).map(|m| m.len()).unwrap_or(0)
    }

    /// Deletes messages (POP3's UPDATE state). A message already gone is not an error.
    pub fn delete(&self, messages: &[&StoredMessage]) -> io::Result<()> {
        for message in messages {
            match fs::remove_file(&message.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.inner.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Opens `address`'s maildrop exclusively, or `None` when another session holds it.
    pub fn lock(&self, address: &str) -> Option<MailboxLock> {
        let folder = mailbox_folder(address);
        let mut locked = self.inner.locked.lock().unwrap_or_else(|e| e.into_inner());
        if !locked.insert(folder.clone()) {
            return None;
        }
        Some(MailboxLock {
            store: self.clone(),
            folder,
        })
    }

    /// Waits until `condition` holds or `deadline` passes; returns whether it held.
    /// Wakes on every delivery and deletion, never on a timer.
    pub async fn wait_until(
        &self,
        deadline: Duration,
        condition: impl Fn(&Mailstore) -> bool,
    ) -> bool {
        let mut changes = self.inner.changes.subscribe();
        let wait = async {
            loop {
                changes.borrow_and_update();
                if condition(self) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok() && condition(self)
    }

    /// A receiver that changes after every delivery or deletion.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

fn list_dir(dir: &Path) -> io::Result<Vec<StoredMessage>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let os_name = entry.file_name();
        let Some(name) = os_name.to_str() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let base = name.split(':').next().unwrap_or(name);
        let (uid, size) = match base.split_once(",S=") {
            Some((uid, rest)) => {
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                (uid.to_string(), digits.parse().ok())
            }
            None => (base.to_string(), None),
        };
        let size = match size {
            Some(s) => s,
            None => entry.metadata()?.len(),
        };
        out.push(StoredMessage {
            uid,
            path: dir.join(&os_name),
            size,
        });
    }
    Ok(out)
}

/// Returns `message` with every bare LF turned into CRLF; borrows when there is none.
fn crlf(message: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let bare = message
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || message[i - 1] != b'\r'));
    if !bare {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Mailstore) {
        let dir = tempfile::tempdir().unwrap();
        let store = Mailstore::open(dir.path().join("mail"), false);
        (dir, store)
    }

    #[test]
    fn deliver_then_open_in_order_with_exact_sizes() {
        let (_d, store) = store();
        store
            .deliver("usr1@gmail.com", b"Subject: a\r\n\r\none\r\n")
            .unwrap();
        store
            .deliver("USR1@gmail.com", b"Subject: b\n\ntwo\n")
            .unwrap();
        let messages = store.messages("usr1@gmail.com").unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(
            fs::read(&messages[0].path).unwrap(),
            b"Subject: a\r\n\r\none\r\n"
        );
        assert_eq!(
            fs::read(&messages[1].path).unwrap(),
            b"Subject: b\r\n\r\ntwo\r\n"
        );
        for m in &messages {
            assert_eq!(m.size, fs::metadata(&m.path).unwrap().len());
            let seen = store.mark_seen(m).unwrap();
            assert!(seen.path.parent().unwrap().ends_with("cur"));
            assert_eq!(fs::read(&seen.path).unwrap(), fs::read(&seen.path).unwrap());
            assert_eq!(store.mark_seen(&seen).unwrap(), seen);
        }
        let reopened = store.messages("usr1@gmail.com").unwrap();
        assert_eq!(
            reopened.iter().map(|m| &m.uid).collect::<Vec<_>>(),
            messages.iter().map(|m| &m.uid).collect::<Vec<_>>()
        );
        assert!(messages[0].uid < messages[1].uid);
    }

    #[test]
    fn concurrent_first_deliveries_all_succeed() {
        for round in 0..20 {
            let (_d, store) = store();
            let address = format!("new{round}@b.c");
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    scope.spawn(|| store.deliver(&address, b"x\r\n").unwrap());
                }
            });
            assert_eq!(store.count(&address), 8);
        }
    }

    #[test]
    fn uids_survive_reopening_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let first = Mailstore::open(dir.path(), false);
        first.deliver("a@b.c", b"x\r\n").unwrap();
        let before = first.messages("a@b.c").unwrap();
        let second = Mailstore::open(dir.path(), false);
        second.deliver("a@b.c", b"y\r\n").unwrap();
        let after = second.messages("a@b.c").unwrap();
        assert_eq!(after[0].uid, before[0].uid);
        assert_ne!(after[1].uid, before[0].uid);
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let (_d, store) = store();
        let held = store.lock("a@b.c").unwrap();
        assert!(store.lock("A@b.c").is_none());
        drop(held);
        assert!(store.lock("a@b.c").is_some());
    }

    #[test]
    fn hostile_addresses_stay_inside_the_root() {
        let (_d, store) = store();
        let delivered = store.deliver("../../escape", b"x\r\n").unwrap();
        assert!(delivered.path.starts_with(store.root()));
    }

    #[tokio::test]
    async fn wait_until_wakes_on_delivery() {
        let (_d, store) = store();
        let writer = store.clone();
        let waiter = tokio::spawn(async move {
            store
                .wait_until(Duration::from_secs(5), |s| s.count("a@b.c") == 1)
                .await
        });
        writer.deliver("a@b.c", b"x\r\n").unwrap();
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn wait_until_gives_up_at_the_deadline() {
        let (_d, store) = store();
        assert!(
            !store
                .wait_until(Duration::from_millis(20), |s| s.count("a@b.c") == 1)
                .await
        );
    }
}
