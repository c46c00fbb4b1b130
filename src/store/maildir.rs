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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::journal;
use super::name::mailbox_folder;
use crate::text::push_decimal;

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
    /// Whether new messages are written as unnamed files (`O_TMPFILE`);
    /// cleared the first time the filesystem refuses one.
    unnamed: AtomicBool,
    /// Whether `linkat(AT_EMPTY_PATH)` names them (it needs
    /// `CAP_DAC_READ_SEARCH` on older kernels); otherwise `/proc/self/fd`.
    empty_path_link: AtomicBool,
    /// Mailboxes open in a POP3 session. A `std` mutex: held for a set insert, never across `.await`.
    locked: Mutex<HashSet<String>>,
    /// Bumped after every delivery or deletion, so waiters wake on facts, not timers.
    changes: watch::Sender<u64>,
    /// Where small messages go first; `None` with `fsync`, where every
    /// message is flushed into its own file before it is acknowledged.
    journal: Option<Journal>,
}

/// The delivery journal of a store, and the thread that places its records.
struct Journal {
    path: PathBuf,
    /// Held while appending. Lock order: `head`, then `tail`.
    tail: Mutex<journal::Tail>,
    /// Held while placing records, and while a mailbox is listed, so that
    /// what a reader lists has its placement committed (a message deleted
    /// after it was listed is never placed again after a crash).
    head: Mutex<journal::Head>,
    /// Records appended so far (the placing thread's check before it
    /// sleeps until the next append).
    appended: AtomicU64,
    /// When the latest record was appended, in nanoseconds after `epoch`:
    /// the placing thread waits for [`QUIET`] after it before it places.
    last_append: AtomicU64,
    epoch: std::time::Instant,
    /// Readers waiting for `head` (in [`Mailstore::settle`]): the placing
    /// thread leaves the journal to them, since they place everything it
    /// holds anyway.
    settling: std::sync::atomic::AtomicUsize,
    /// Whether the placing thread sleeps until the next append.
    sleeping: AtomicBool,
    /// The placing thread, once started (`None`: it could not be).
    worker: std::sync::OnceLock<Option<std::thread::Thread>>,
    /// The placing thread's kernel id, once it runs (0 before), as
    /// `/proc/self/task/<id>` names it.
    worker_tid: std::sync::atomic::AtomicI32,
}

impl Journal {
    fn since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long ago the latest record was appended.
    fn quiet_for(&self) -> Duration {
        let last = self.last_append.load(Ordering::Relaxed);
        Duration::from_nanos(self.since_epoch().saturating_sub(last))
    }
}

/// What the placing thread does next while records wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Place a batch now.
    Place,
    /// Ingest goes on: look again after this long.
    Wait(Duration),
}

/// Places once ingest has paused for [`QUIET`] (or the journal holds
/// [`BACKLOG`]); otherwise waits, twice as long as the last wait, up to
/// [`MAX_BACKOFF`]. `backoff` is the next wait, [`QUIET`] again once it
/// places. After a burst, placing starts within [`MAX_BACKOFF`] and goes on
/// batch after batch with no wait between them.
fn pace(quiet_for: Duration, backlogged: bool, backoff: &mut Duration) -> Pace {
    if backlogged || quiet_for >= QUIET {
        *backoff = QUIET;
        return Pace::Place;
    }
    let wait = *backoff;
    *backoff = (wait * 2).min(MAX_BACKOFF);
    Pace::Wait(wait)
}

/// How long ingest must pause before records are placed in the background:
/// while messages arrive, the CPU goes to the sessions.
const QUIET: Duration = Duration::from_millis(2);
/// While ingest goes on, the placing thread looks again after twice as long
/// each time, up to this: waking every [`QUIET`] through a long run of
/// messages took a core from the sessions or their clients ~500 times a
/// second.
const MAX_BACKOFF: Duration = Duration::from_millis(64);
/// Past this many octets waiting in the journal, records are placed even
/// while ingest goes on, so the journal cannot grow without bound.
const BACKLOG: u64 = 256 * 1024 * 1024;

impl Drop for Inner {
    fn drop(&mut self) {
        // The placing thread holds only a weak reference: wake it to see
        // the store is gone, and end.
        if let Some(Some(thread)) = self.journal.as_ref().and_then(|j| j.worker.get()) {
            thread.unpark();
        }
    }
}

/// Holds a mailbox open for one POP3 session; dropping it releases the mailbox
/// however the session ends.
pub struct MailboxLock {
    store: Mailstore,
    folder: String,
}

impl Drop for MailboxLock {
    fn drop(&mut self) {
        lock(&self.store.inner.locked).remove(&self.folder);
    }
}

impl Mailstore {
    /// The store under `root`; folders are created on first delivery. With
    /// `fsync`, every delivery is flushed to the disk before it is
    /// acknowledged; without it, a delivery survives a crash of the process
    /// (the kernel has it) but not of the machine.
    ///
    /// Without `fsync`, small messages go through the delivery journal
    /// (see [`super::journal`]); what a previous run left in it is placed
    /// in the Maildirs here, before anything reads them.
    pub fn open(root: impl Into<PathBuf>, fsync: bool) -> io::Result<Mailstore> {
        let root = root.into();
        let journal = if fsync {
            None
        } else {
            let path = journal::path_for(&root);
            let (tail, head) = journal::open(&path)?;
            Some(Journal {
                path,
                tail: Mutex::new(tail),
                head: Mutex::new(head),
                appended: AtomicU64::new(0),
                last_append: AtomicU64::new(0),
                epoch: std::time::Instant::now(),
                settling: std::sync::atomic::AtomicUsize::new(0),
                sleeping: AtomicBool::new(false),
                worker: std::sync::OnceLock::new(),
                worker_tid: std::sync::atomic::AtomicI32::new(0),
            })
        };
        let store = Mailstore {
            inner: Arc::new(Inner {
                root,
                fsync,
                seq: AtomicU64::new(0),
                unnamed: AtomicBool::new(true),
                empty_path_link: AtomicBool::new(true),
                locked: Mutex::new(HashSet::new()),
                changes: watch::channel(0).0,
                journal,
            }),
        };
        store.settle()?;
        Ok(store)
    }

    /// The folder that holds `address`'s mail.
    pub fn mailbox_path(&self, address: &str) -> PathBuf {
        self.inner.root.join(mailbox_folder(address))
    }

    /// Removes what deliveries interrupted by a crash left in the `tmp/`
    /// folders (never renamed into `new/`, so never acknowledged). Call only
    /// while no delivery runs, i.e. at start under the data directory lock.
    pub fn clean_tmp(&self) -> io::Result<usize> {
        let listing = match fs::read_dir(&self.inner.root) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for mailbox in listing {
            let tmp = mailbox?.path().join("tmp");
            let Ok(files) = fs::read_dir(&tmp) else {
                continue;
            };
            for file in files {
                fs::remove_file(file?.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Stores `message` in `address`'s mailbox. Bare LF line ends become CRLF,
    /// so the stored size is the size POP3 reports.
    pub fn deliver(&self, address: &str, message: &[u8]) -> Result<Delivered, StoreError> {
        let normalized = crlf(message);
        if self.inner.journal.is_some() {
            return self.append(address, &[&normalized]);
        }
        self.write_new(address, normalized.len() as u64, |file| {
            file.write_all(&normalized)
        })
    }

    /// Stores `prefix` (trace fields) followed by `body`, a message with
    /// CRLF line ends, in `address`'s mailbox, in one write.
    pub fn deliver_prefixed(
        &self,
        address: &str,
        prefix: &[u8],
        body: &[u8],
    ) -> Result<Delivered, StoreError> {
        if self.inner.journal.is_some() {
            return self.append(address, &[prefix, body]);
        }
        self.write_new(address, (prefix.len() + body.len()) as u64, |file| {
            write_all_vectored(file, prefix, body)
        })
    }

    /// Stores a message (`parts` in order) in the delivery journal: one
    /// write and no file made, yet it survives the process being killed
    /// from here on. Its Maildir file comes later, under the name chosen
    /// now.
    fn append(&self, address: &str, parts: &[&[u8]]) -> Result<Delivered, StoreError> {
        let journal = self.journal();
        let size: usize = parts.iter().map(|p| p.len()).sum();
        let folder = mailbox_folder(address);
        let uid = self.unique_id();
        let name = Self::file_name(&uid, size as u64);
        journal::append(
            &journal.path,
            &mut lock(&journal.tail),
            &folder,
            &name,
            parts,
        )
        .map_err(|source| StoreError::Io {
            mailbox: address.to_string(),
            source,
        })?;
        journal
            .last_append
            .store(journal.since_epoch(), Ordering::Relaxed);
        journal.appended.fetch_add(1, Ordering::SeqCst);
        self.wake_placer(journal);
        self.changed();
        let root = self.inner.root.as_os_str();
        let mut path = PathBuf::with_capacity(root.len() + folder.len() + name.len() + 8);
        path.push(root);
        path.push(&folder);
        path.push("new");
        path.push(&name);
        Ok(Delivered { uid, path })
    }

    /// The delivery journal of a store that has one.
    fn journal(&self) -> &Journal {
        self.inner.journal.as_ref().expect("a store with a journal")
    }

    /// Makes sure the placing thread runs, and wakes it if it sleeps.
    fn wake_placer(&self, journal: &Journal) {
        let worker = journal.worker.get_or_init(|| {
            let weak = Arc::downgrade(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("mail-journal".into())
                .spawn(move || place_in_background(weak));
            match spawned {
                Ok(handle) => Some(handle.thread().clone()),
                Err(e) => {
                    // Readers still place what they list: nothing is lost.
                    tracing::warn!("cannot start the journal thread: {e}");
                    None
                }
            }
        });
        if journal.sleeping.swap(false, Ordering::SeqCst) {
            if let Some(thread) = worker {
                thread.unpark();
            }
        }
    }

    /// Places up to `limit` records waiting in the journal into their
    /// Maildirs and commits how far it got; returns how many it placed.
    /// The caller holds `head`. When the journal is then empty, it is cut
    /// back to its header.
    fn place_pending(
        &self,
        journal: &Journal,
        head: &mut journal::Head,
        limit: usize,
    ) -> io::Result<usize> {
        let end = lock(&journal.tail).end;
        if head.done >= end {
            return Ok(0);
        }
        head.ensure_open(&journal.path)?;
        let mut at = head.done;
        let mut placed = 0;
        while placed < limit {
            let Some(record) = journal::read_record(head, at, end)? else {
                break;
            };
            let body = journal::read_body(head, &record)?;
            let dir = self.inner.root.join(&record.folder);
            match self.write_named(&dir, &record.name, |file| file.write_all(&body)) {
                Ok(()) => {}
                // Placed before a crash, whose commit did not happen.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    head.commit(at)?;
                    return Err(e);
                }
            }
            at = record.next;
            placed += 1;
        }
        let mut tail = lock(&journal.tail);
        if at >= tail.end {
            head.reset(&mut tail)?;
        } else {
            drop(tail);
            head.commit(at)?;
        }
        Ok(placed)
    }

    /// Places every record waiting in the journal, holding the journal
    /// until the returned guard is dropped (nothing is placed meanwhile).
    fn settle(&self) -> io::Result<Option<std::sync::MutexGuard<'_, journal::Head>>> {
        let Some(journal) = &self.inner.journal else {
            return Ok(None);
        };
        journal.settling.fetch_add(1, Ordering::SeqCst);
        let mut head = lock(&journal.head);
        journal.settling.fetch_sub(1, Ordering::SeqCst);
        self.place_pending(journal, &mut head, usize::MAX)?;
        Ok(Some(head))
    }

    /// Places what the journal holds now, for up to `within`: at a clean
    /// stop, so the Maildirs are complete for whoever reads them next.
    /// Returns whether everything was placed; what is left is placed at
    /// the next [`Mailstore::open`].
    pub fn flush_journal(&self, within: Duration) -> io::Result<bool> {
        let Some(journal) = &self.inner.journal else {
            return Ok(true);
        };
        let deadline = std::time::Instant::now().checked_add(within);
        loop {
            let mut head = lock(&journal.head);
            self.place_pending(journal, &mut head, 256)?;
            if head.done >= lock(&journal.tail).end {
                return Ok(true);
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// Stores `prefix` (trace fields) followed by the `body_size` octets of
    /// `body`, a spool file with CRLF line ends, in `address`'s mailbox. The
    /// body is copied file to file (by the kernel where it can), never read
    /// whole into memory.
    pub fn deliver_parts(
        &self,
        address: &str,
        prefix: &[u8],
        body: &mut fs::File,
        body_size: u64,
    ) -> Result<Delivered, StoreError> {
        self.write_new(address, prefix.len() as u64 + body_size, |file| {
            file.write_all(prefix)?;
            copy_whole(body, file, body_size)
        })
    }

    /// Writes a new message of `size` octets with `write` in `tmp/`, then
    /// puts it in `new/`: an unnamed file (`O_TMPFILE`) linked into `new/`
    /// where the filesystem allows it, which is one directory operation per
    /// message and leaves nothing behind after a crash; otherwise a named
    /// file renamed into `new/`, as Maildir always did.
    fn write_new(
        &self,
        address: &str,
        size: u64,
        write: impl FnOnce(&mut fs::File) -> io::Result<()>,
    ) -> Result<Delivered, StoreError> {
        let err = |source| StoreError::Io {
            mailbox: address.to_string(),
            source,
        };
        let dir = self.mailbox_path(address);
        let uid = self.unique_id();
        let name = Self::file_name(&uid, size);
        self.write_named(&dir, &name, write).map_err(err)?;
        self.changed();
        let new = dir.join("new").join(&name);
        Ok(Delivered { uid, path: new })
    }

    /// Writes a message named `name` into the Maildir `dir` with `write`
    /// (see [`Mailstore::write_new`]). `AlreadyExists` when `new/` has it.
    fn write_named(
        &self,
        dir: &Path,
        name: &str,
        write: impl FnOnce(&mut fs::File) -> io::Result<()>,
    ) -> io::Result<()> {
        let new = dir.join("new").join(name);
        // The folders exist after the first delivery: create them only when needed,
        // which saves three lookups a message.
        let mut draft = match self.draft(dir, name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // `tmp/` last: whoever finds `tmp/` may rely on `new/` and `cur/`.
                for sub in ["new", "cur", "tmp"] {
                    fs::create_dir_all(dir.join(sub))?;
                }
                self.draft(dir, name)?
            }
            other => other?,
        };
        let written = write(draft.file()).and_then(|_| {
            if self.inner.fsync {
                draft.file().sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            draft.discard();
            return Err(e);
        }
        if let Err(e) = self.publish(&mut draft, &new) {
            // `new/` removed by hand while we run: make it again, once.
            if e.kind() != io::ErrorKind::NotFound || fs::create_dir_all(dir.join("new")).is_err() {
                draft.discard();
                return Err(e);
            }
            if let Err(e) = self.publish(&mut draft, &new) {
                draft.discard();
                return Err(e);
            }
        }
        if self.inner.fsync {
            fs::File::open(dir.join("new")).and_then(|d| d.sync_all())?;
        }
        Ok(())
    }

    /// A file to write a new message into, in `dir`'s `tmp/`.
    fn draft(&self, dir: &Path, name: &str) -> io::Result<Draft> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = dir.join("tmp");
        if self.inner.unnamed.load(Ordering::Relaxed) {
            let opened = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_TMPFILE)
                .open(&tmp);
            match opened {
                Ok(file) => return Ok(Draft::Unnamed(file)),
                // Not on this filesystem (or kernel): name files as before.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                    ) =>
                {
                    self.inner.unnamed.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let path = tmp.join(name);
        fs::File::create(&path).map(|file| Draft::Named(file, path))
    }

    /// Gives the written draft its name in `new/`.
    fn publish(&self, draft: &mut Draft, new: &Path) -> io::Result<()> {
        let file = match draft {
            Draft::Named(_, tmp) => return fs::rename(&*tmp, new),
            Draft::Unnamed(file) => file,
        };
        match link_unnamed(file, new, &self.inner.empty_path_link) {
            // Neither way of linking an unnamed file works here (no
            // `/proc`), although `new/` exists: copy it to a named file
            // instead, and name files from now on.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && new.parent().is_some_and(Path::is_dir) =>
            {
                self.inner.unnamed.store(false, Ordering::Relaxed);
                let tmp = new
                    .parent()
                    .and_then(Path::parent)
                    .map(|dir| dir.join("tmp"))
                    .unwrap_or_default()
                    .join(new.file_name().unwrap_or_default());
                let mut named = fs::File::create(&tmp)?;
                let size = file.metadata()?.len();
                let copied = copy_whole(file, &mut named, size)
                    .and_then(|_| {
                        if self.inner.fsync {
                            named.sync_all()
                        } else {
                            Ok(())
                        }
                    })
                    .and_then(|_| fs::rename(&tmp, new));
                if copied.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                copied
            }
            other => other,
        }
    }

    /// `<nanoseconds since 1970, 20 digits>.P<pid>Q<sequence>.mailnet`.
    fn unique_id(&self) -> String {
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(64);
        push_decimal(&mut id, crate::id::unix_nanos(), 20);
        id.push_str(".P");
        push_decimal(&mut id, crate::id::pid().into(), 0);
        id.push('Q');
        push_decimal(&mut id, seq, 0);
        id.push_str(".mailnet");
        id
    }

    /// A message's file name: its unique id and its size (`,S=`), so a
    /// listing needs no `stat`.
    fn file_name(uid: &str, size: u64) -> String {
        let mut name = String::with_capacity(uid.len() + 24);
        name.push_str(uid);
        name.push_str(",S=");
        push_decimal(&mut name, size, 0);
        name
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
        // Whatever the journal holds reaches its Maildir first; the journal
        // stays held while listing (see `Journal::head`).
        let _placed = self.settle().map_err(err)?;
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
        // All or nothing (RFC 1939's UPDATE state): the names go to a
        // journal first, so a crash between two unlinks is finished at the
        // next start instead of leaving half the deletions done.
        let mut by_mailbox: std::collections::BTreeMap<&Path, Vec<String>> = Default::default();
        for message in messages {
            let Some((mailbox, name)) = mailbox_and_name(&message.path) else {
                continue;
            };
            by_mailbox.entry(mailbox).or_default().push(name);
        }
        for (mailbox, names) in by_mailbox {
            let journal = mailbox.join(DELETIONS);
            let tmp = mailbox.join(format!("{DELETIONS}.tmp"));
            let mut file = fs::File::create(&tmp)?;
            file.write_all(names.join("\n").as_bytes())?;
            if self.inner.fsync {
                file.sync_all()?;
            }
            drop(file);
            fs::rename(&tmp, &journal)?;
            finish_deletions(mailbox)?;
        }
        self.changed();
        Ok(())
    }

    /// Finishes deletions a crash interrupted, in every mailbox; returns
    /// how many mailboxes had some. Call at start, before sessions run.
    pub fn recover_deletions(&self) -> io::Result<usize> {
        let listing = match fs::read_dir(&self.inner.root) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut finished = 0;
        for mailbox in listing {
            if finish_deletions(&mailbox?.path())? {
                finished += 1;
            }
        }
        Ok(finished)
    }

    /// Opens `address`'s maildrop exclusively, or `None` when another session holds it.
    pub fn lock(&self, address: &str) -> Option<MailboxLock> {
        let folder = mailbox_folder(address);
        let mut locked = lock(&self.inner.locked);
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

    /// Tells whoever waits on [`Mailstore::subscribe`] that mail changed.
    /// Nobody listens most of the time, and a send wakes tokio's eight
    /// notifier shards, a lock each (~300 instructions, every message).
    /// Skipping it then loses nothing: a receiver made later starts from
    /// the value it finds, and one made before this check is counted (its
    /// subscription precedes its first look at the mailbox, which takes
    /// the journal's lock after or before this store took it).
    fn changed(&self) {
        // The delivery's writes before the count's read, whatever the
        // platform (the subscriber's side is a read-modify-write).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.inner.changes.receiver_count() > 0 {
            self.inner.changes.send_modify(|n| *n += 1);
        }
    }
}

/// Locks a `std` mutex, whether or not a thread panicked holding it (the
/// data it guards is consistent between statements).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The placing thread: sleeps until records wait, lets ingest pause for
/// [`QUIET`] (or the backlog pass [`BACKLOG`]), then places them a batch at
/// a time (see [`pace`]). It ends when the store is dropped.
fn place_in_background(weak: std::sync::Weak<Inner>) {
    // Few records at a time: readers wait for `head` while a batch is
    // placed, and at low priority a batch can take long on a busy machine.
    const BATCH: usize = 16;
    low_priority();
    if let Some(inner) = weak.upgrade() {
        if let Some(journal) = &inner.journal {
            // SAFETY: gettid takes no arguments and cannot fail.
            let tid = unsafe { libc::gettid() };
            journal.worker_tid.store(tid, Ordering::SeqCst);
        }
    }
    let upgrade = || weak.upgrade().map(|inner| Mailstore { inner });
    let mut backoff = QUIET;
    loop {
        let Some(store) = upgrade() else {
            return;
        };
        let journal = store.journal();
        let seen = journal.appended.load(Ordering::SeqCst);
        let done = lock(&journal.head).done;
        let end = lock(&journal.tail).end;
        if done >= end {
            journal.sleeping.store(true, Ordering::SeqCst);
            // An append after this check finds `sleeping` set and unparks
            // us, so `park` returns at once; one before it changed `appended`.
            if journal.appended.load(Ordering::SeqCst) == seen {
                drop(store);
                std::thread::park();
            } else {
                journal.sleeping.store(false, Ordering::SeqCst);
            }
            backoff = QUIET;
            continue;
        }
        let next = if journal.settling.load(Ordering::SeqCst) > 0 {
            // A reader is about to place all of it.
            Pace::Wait(QUIET)
        } else {
            pace(journal.quiet_for(), end - done >= BACKLOG, &mut backoff)
        };
        if let Pace::Wait(wait) = next {
            drop(store);
            std::thread::park_timeout(wait);
            continue;
        }
        let placed = store.place_pending(journal, &mut lock(&journal.head), BATCH);
        if let Err(e) = placed {
            // Readers place what they list and report the error themselves;
            // try again later rather than spin on a full disk.
            tracing::warn!("placing journalled mail: {e}");
            drop(store);
            std::thread::park_timeout(Duration::from_secs(1));
        }
    }
}

/// Puts the calling thread at the lowest priority (nice 19): placing is
/// deferred work, so it should take a core only when little else wants one,
/// not from the sessions or from the clients they serve on the same machine
/// (on 2 cores, its running beside `smtp-source` cost ~4% of new
/// connections/s). Not `SCHED_IDLE`, which measured the same: a starved
/// thread there holds `head` for as long as the machine stays busy, and
/// readers wait on it; at nice 19 a batch still gets ~1.5% of a busy core.
/// Every reader places what it lists, so nothing waits on this thread for
/// correctness. Best effort: where the kernel refuses, it keeps its priority.
fn low_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a system call on the calling thread (on Linux, PRIO_PROCESS
        // with who 0 is the calling thread) with plain integers.
        let refused = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0;
        if refused {
            tracing::debug!(
                "journal thread stays at normal priority: {}",
                io::Error::last_os_error()
            );
        }
    }
}

fn list_dir(dir: &Path) -> io::Result<Vec<StoredMessage>> {
    let mut out = Vec::with_capacity(1024);
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
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                (uid.to_string(), rest[..digits].parse().ok())
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
/// The journal of a POP3 session's deletions, in its mailbox folder.
const DELETIONS: &str = "pop3-deletions";

/// `(mailbox folder, "new/NAME" or "cur/NAME")` of a stored message.
fn mailbox_and_name(path: &Path) -> Option<(&Path, String)> {
    let sub = path.parent()?;
    let mailbox = sub.parent()?;
    let name = format!(
        "{}/{}",
        sub.file_name()?.to_str()?,
        path.file_name()?.to_str()?
    );
    Some((mailbox, name))
}

/// Unlinks what `mailbox`'s deletion journal lists, then the journal;
/// returns whether there was one. Names that are not `new/…` or `cur/…`
/// files of this mailbox are ignored, so a tampered journal deletes nothing else.
fn finish_deletions(mailbox: &Path) -> io::Result<bool> {
    let journal = mailbox.join(DELETIONS);
    let listed = match fs::read_to_string(&journal) {
        Ok(listed) => listed,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    for name in listed.lines() {
        let Some((sub, file)) = name.split_once('/') else {
            continue;
        };
        if !matches!(sub, "new" | "cur")
            || file.is_empty()
            || file.contains('/')
            || file.starts_with('.')
        {
            continue;
        }
        match fs::remove_file(mailbox.join(sub).join(file)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::remove_file(&journal)?;
    Ok(true)
}

/// A new message's file while it is written.
enum Draft {
    /// Created with `O_TMPFILE`: no name until it is linked into `new/`;
    /// gone by itself if it never is.
    Unnamed(fs::File),
    /// Created in `tmp/` under this path, renamed into `new/`.
    Named(fs::File, PathBuf),
}

impl Draft {
    fn file(&mut self) -> &mut fs::File {
        match self {
            Draft::Unnamed(file) | Draft::Named(file, _) => file,
        }
    }

    /// Drops a draft that will not be delivered.
    fn discard(self) {
        if let Draft::Named(file, path) = self {
            drop(file);
            let _ = fs::remove_file(path);
        }
    }
}

/// Names the unnamed file `file` `to`: with `linkat(AT_EMPTY_PATH)` while
/// `empty_path` says it works, else through `/proc/self/fd`.
fn link_unnamed(file: &fs::File, to: &Path, empty_path: &AtomicBool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    let fd = file.as_raw_fd();
    if empty_path.load(Ordering::Relaxed) {
        // SAFETY: `fd` is open for the call; both strings are NUL-terminated.
        let linked = unsafe {
            libc::linkat(
                fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        if linked == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // Not allowed without the capability (or `new/` is missing: the
            // other way says which).
            Some(libc::ENOENT | libc::EPERM) => {}
            _ => return Err(e),
        }
    }
    let proc = std::ffi::CString::new(format!("/proc/self/fd/{fd}"))?;
    // SAFETY: as above.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked != 0 {
        return Err(io::Error::last_os_error());
    }
    // `/proc` linked it: the first way is refused here, not worth trying again.
    empty_path.store(false, Ordering::Relaxed);
    Ok(())
}

/// Writes `head` then `tail` to `file`, in one system call when it takes both.
fn write_all_vectored(file: &mut fs::File, head: &[u8], tail: &[u8]) -> io::Result<()> {
    let mut at = 0;
    let total = head.len() + tail.len();
    while at < total {
        let written = if at < head.len() {
            file.write_vectored(&[io::IoSlice::new(&head[at..]), io::IoSlice::new(tail)])
        } else {
            file.write(&tail[at - head.len()..])
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies all of `from` (rewound first) to the end of `to`, checking it
/// holds `size` octets.
pub(super) fn copy_whole(from: &mut fs::File, to: &mut fs::File, size: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    from.seek(SeekFrom::Start(0))?;
    let copied = io::copy(from, to)?;
    if copied != size {
        return Err(io::Error::other(format!(
            "the spooled message has {copied} octets, {size} expected"
        )));
    }
    Ok(())
}

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

    /// Waits until `done` holds, failing with `what` after 10 s.
    fn within_10s(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::park_timeout(Duration::from_millis(5));
        }
    }

    fn store() -> (tempfile::TempDir, Mailstore) {
        let dir = tempfile::tempdir().unwrap();
        let store = Mailstore::open(dir.path().join("mail"), false).unwrap();
        (dir, store)
    }

    #[test]
    fn deletions_interrupted_by_a_crash_are_finished_at_start() {
        let (_d, store) = store();
        for i in 0..5 {
            store
                .deliver(
                    "usr1@gmail.com",
                    format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
                )
                .unwrap();
        }
        let all = store.messages("usr1@gmail.com").unwrap();
        // A crash after the journal was written and two of four unlinks.
        let mailbox = store.mailbox_path("usr1@gmail.com");
        let doomed: Vec<String> = all[..4]
            .iter()
            .map(|m| mailbox_and_name(&m.path).unwrap().1)
            .chain(["../../escape".to_string(), "tmp/x".to_string()])
            .collect();
        fs::write(mailbox.join(DELETIONS), doomed.join("\n")).unwrap();
        fs::remove_file(&all[0].path).unwrap();
        fs::remove_file(&all[1].path).unwrap();
        assert_eq!(store.messages("usr1@gmail.com").unwrap().len(), 3);
        assert_eq!(store.recover_deletions().unwrap(), 1);
        let left = store.messages("usr1@gmail.com").unwrap();
        assert_eq!(left, vec![all[4].clone()], "all four deleted, nothing else");
        assert!(!mailbox.join(DELETIONS).exists());
        assert_eq!(store.recover_deletions().unwrap(), 0);
    }

    #[test]
    fn delete_removes_every_message_and_its_journal() {
        let (_d, store) = store();
        for i in 0..3 {
            store
                .deliver(
                    "bob@gmail.com",
                    format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
                )
                .unwrap();
        }
        let all = store.messages("bob@gmail.com").unwrap();
        let seen = store.mark_seen(&all[0]).unwrap();
        store.delete(&[&seen, &all[2]]).unwrap();
        assert_eq!(
            store.messages("bob@gmail.com").unwrap(),
            vec![all[1].clone()]
        );
        assert!(!store.mailbox_path("bob@gmail.com").join(DELETIONS).exists());
    }

    #[test]
    fn every_way_of_writing_a_message_stores_the_same_bytes() {
        // Unnamed and linked with AT_EMPTY_PATH, through /proc, or named
        // and renamed (a filesystem without O_TMPFILE).
        for (unnamed, empty_path) in [(true, true), (true, false), (false, false)] {
            let (_d, store) = store();
            store.inner.unnamed.store(unnamed, Ordering::Relaxed);
            store
                .inner
                .empty_path_link
                .store(empty_path, Ordering::Relaxed);
            let mut spooled = tempfile::tempfile().unwrap();
            spooled.write_all(b"Subject: b\r\n\r\nbody\r\n").unwrap();
            let mut delivered = vec![store
                .deliver_prefixed("a@b.c", b"Return-Path: <>\r\n", b"Subject: a\r\n\r\nx\r\n")
                .unwrap()];
            delivered.push(
                store
                    .deliver_parts("a@b.c", b"Return-Path: <>\r\n", &mut spooled, 20)
                    .unwrap(),
            );
            let messages = store.messages("a@b.c").unwrap();
            assert_eq!(messages.len(), 2);
            assert_eq!(
                fs::read(&messages[0].path).unwrap(),
                b"Return-Path: <>\r\nSubject: a\r\n\r\nx\r\n"
            );
            assert_eq!(
                fs::read(&messages[1].path).unwrap(),
                b"Return-Path: <>\r\nSubject: b\r\n\r\nbody\r\n"
            );
            for (message, delivered) in messages.iter().zip(&delivered) {
                assert_eq!(message.path, delivered.path);
                assert_eq!(message.size, fs::metadata(&message.path).unwrap().len());
            }
            let tmp = store.mailbox_path("a@b.c").join("tmp");
            assert_eq!(
                fs::read_dir(tmp).unwrap().count(),
                0,
                "nothing left in tmp/"
            );
        }
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        for unnamed in [true, false] {
            let (_d, store) = store();
            store.deliver("a@b.c", b"x\r\n").unwrap();
            store.inner.unnamed.store(unnamed, Ordering::Relaxed);
            let mut short = tempfile::tempfile().unwrap();
            short.write_all(b"only this").unwrap();
            assert!(store.deliver_parts("a@b.c", b"", &mut short, 100).is_err());
            assert_eq!(store.count("a@b.c"), 1);
            let tmp = store.mailbox_path("a@b.c").join("tmp");
            assert_eq!(fs::read_dir(tmp).unwrap().count(), 0);
        }
    }

    #[test]
    fn a_new_folder_removed_by_hand_is_made_again() {
        let (_d, store) = store();
        store.deliver("a@b.c", b"x\r\n").unwrap();
        store.flush_journal(Duration::from_secs(10)).unwrap();
        fs::remove_dir_all(store.mailbox_path("a@b.c").join("new")).unwrap();
        store.deliver("a@b.c", b"y\r\n").unwrap();
        assert_eq!(store.count("a@b.c"), 1);
    }

    #[test]
    fn leftover_tmp_files_are_cleaned() {
        let (_d, store) = store();
        store.deliver("bob@gmail.com", b"x\r\n").unwrap();
        store.flush_journal(Duration::from_secs(10)).unwrap();
        let tmp = store.mailbox_path("bob@gmail.com").join("tmp");
        fs::write(tmp.join("half"), b"half a message").unwrap();
        assert_eq!(store.clean_tmp().unwrap(), 1);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(store.count("bob@gmail.com"), 1);
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
        let first = Mailstore::open(dir.path(), false).unwrap();
        first.deliver("a@b.c", b"x\r\n").unwrap();
        let before = first.messages("a@b.c").unwrap();
        let second = Mailstore::open(dir.path(), false).unwrap();
        second.deliver("a@b.c", b"y\r\n").unwrap();
        let after = second.messages("a@b.c").unwrap();
        assert_eq!(after[0].uid, before[0].uid);
        assert_ne!(after[1].uid, before[0].uid);
    }

    #[test]
    fn a_journalled_message_is_listed_at_once_and_placed_in_the_background() {
        let (_d, store) = store();
        let delivered = store.deliver("a@b.c", b"Subject: j\r\n\r\nx\r\n").unwrap();
        // No reader asks: the placing thread makes the file once ingest pauses.
        within_10s("never placed", || delivered.path.exists());
        assert_eq!(
            fs::read(&delivered.path).unwrap(),
            b"Subject: j\r\n\r\nx\r\n"
        );
        let journal = journal::path_for(store.root());
        within_10s("journal never emptied", || {
            fs::metadata(&journal).unwrap().len() == journal::HEADER_LEN
        });
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_placing_thread_runs_at_the_lowest_priority() {
        let (_d, store) = store();
        let delivered = store.deliver("a@b.c", b"Subject: j\r\n\r\nx\r\n").unwrap();
        within_10s("never placed", || delivered.path.exists());
        let tid = store.journal().worker_tid.load(Ordering::SeqCst);
        assert!(tid > 0, "the placing thread never said who it is");
        // /proc/self/task/<tid>/stat: field 19 is the nice value; fields
        // are counted after the `(comm)` field, which may hold spaces.
        let stat = fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i32 = after_comm.split(' ').nth(19 - 3).unwrap().parse().unwrap();
        assert_eq!(nice, 19);
    }

    #[test]
    fn the_placing_thread_backs_off_while_ingest_goes_on_and_places_at_once_after() {
        let mut backoff = QUIET;
        let busy = Duration::from_micros(100);
        let waits: Vec<Pace> = (0..8).map(|_| pace(busy, false, &mut backoff)).collect();
        let ms = |n| Pace::Wait(Duration::from_millis(n));
        assert_eq!(
            waits,
            [ms(2), ms(4), ms(8), ms(16), ms(32), ms(64), ms(64), ms(64)]
        );
        // A pause of QUIET, or a backlog, places, and the next wait is short again.
        assert_eq!(pace(QUIET, false, &mut backoff), Pace::Place);
        assert_eq!(backoff, QUIET);
        let _ = pace(busy, false, &mut backoff);
        assert_eq!(pace(busy, true, &mut backoff), Pace::Place);
        assert_eq!(backoff, QUIET);
    }

    /// The placing thread's voluntary context switches so far: each is a
    /// sleep it woke from.
    #[cfg(target_os = "linux")]
    fn placer_sleeps(store: &Mailstore) -> u64 {
        let tid = store.journal().worker_tid.load(Ordering::SeqCst);
        let status = fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_placing_thread_wakes_rarely_during_ingest_and_places_a_burst_without_pauses() {
        let (_d, store) = store();
        store.deliver("a@b.c", b"Subject: 0\r\n\r\nx\r\n").unwrap();
        within_10s("the placing thread never started", || {
            store.journal().worker_tid.load(Ordering::SeqCst) > 0
        });
        // A message every 0.5 ms for 300 ms: ingest never pauses for QUIET.
        let before = placer_sleeps(&store);
        let start = std::time::Instant::now();
        let mut sent = 0u32;
        while start.elapsed() < Duration::from_millis(300) {
            let due = start + Duration::from_micros(500) * sent;
            while std::time::Instant::now() < due {
                std::hint::spin_loop();
            }
            store.deliver("a@b.c", b"Subject: x\r\n\r\nx\r\n").unwrap();
            sent += 1;
        }
        let during = placer_sleeps(&store) - before;
        // Looking every QUIET, it woke ~150 times in these 300 ms.
        assert!(
            during < 40,
            "woke {during} times while {sent} messages came"
        );
        // Then it places the backlog batch after batch, not a pause of QUIET
        // between two (there were ~40 batches of 16).
        let journal = journal::path_for(store.root());
        let before = placer_sleeps(&store);
        within_10s("journal never emptied", || {
            fs::metadata(&journal).unwrap().len() == journal::HEADER_LEN
        });
        let placing = placer_sleeps(&store) - before;
        assert!(
            placing < 12,
            "slept {placing} times placing {sent} messages"
        );
        assert_eq!(
            fs::read_dir(store.mailbox_path("a@b.c").join("new"))
                .unwrap()
                .count(),
            sent as usize + 1
        );
    }

    #[test]
    fn what_a_killed_run_left_in_the_journal_is_placed_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mail");
        let path = journal::path_for(&root);
        // A run killed with three records appended, the first one already
        // placed and then deleted by a POP3 client, its commit written.
        let (mut tail, mut head) = journal::open(&path).unwrap();
        for (name, body) in [("1,S=3", "one"), ("2,S=3", "two"), ("3,S=5", "three")] {
            journal::append(&path, &mut tail, "a@b.c", name, &[body.as_bytes()]).unwrap();
        }
        head.ensure_open(&path).unwrap();
        let first = journal::read_record(&head, head.done, tail.end)
            .unwrap()
            .unwrap();
        head.commit(first.next).unwrap();
        // ...and the second placed, but killed before its commit.
        let new = root.join("a@b.c").join("new");
        fs::create_dir_all(&new).unwrap();
        fs::write(new.join("2,S=3"), b"two").unwrap();
        let store = Mailstore::open(&root, false).unwrap();
        let listed: Vec<_> = store
            .messages("a@b.c")
            .unwrap()
            .iter()
            .map(|m| (m.uid.clone(), fs::read_to_string(&m.path).unwrap()))
            .collect();
        assert_eq!(
            listed,
            [
                ("2".to_string(), "two".to_string()),
                ("3".into(), "three".into())
            ],
            "the deleted one stays deleted; none twice"
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), journal::HEADER_LEN);
    }

    #[test]
    fn with_fsync_every_message_gets_its_file_before_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Mailstore::open(dir.path().join("mail"), true).unwrap();
        let delivered = store.deliver("a@b.c", b"x\r\n").unwrap();
        assert!(delivered.path.exists());
        assert!(!journal::path_for(store.root()).exists());
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

    /// Deliveries racing waiters that subscribe at that moment: with
    /// nobody listening a delivery tells nobody, and no waiter may miss
    /// one because of it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_subscribing_while_mail_arrives_never_misses_it() {
        for fsync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = Mailstore::open(dir.path().join("mail"), fsync).unwrap();
            for i in 0..200 {
                let waiter = {
                    let store = store.clone();
                    tokio::spawn(async move {
                        store
                            .wait_until(Duration::from_secs(10), move |s| s.count("a@b.c") == i + 1)
                            .await
                    })
                };
                let writer = store.clone();
                tokio::task::spawn_blocking(move || writer.deliver("a@b.c", b"x\r\n").unwrap())
                    .await
                    .unwrap();
                assert!(
                    waiter.await.unwrap(),
                    "delivery {i} (fsync {fsync}) was missed"
                );
            }
        }
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
