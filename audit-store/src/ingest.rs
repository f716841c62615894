//! Getting records in: from a JSONL file or stream (what `portcullis serve
//! --audit-log FILE` writes), and from a server, record by record.
//!
//! Both paths batch, because a commit's sync is the cost that dominates,
//! and both acknowledge only after the commit. [`ingest_jsonl`] commits a
//! batch when it is full *or* when no more input is buffered, so a slow
//! stream (`tail -f log | portcullis audit ingest -`) is committed as it
//! arrives rather than held back to fill a batch. [`Ingestor`] is group
//! commit for servers: any number of threads call [`IngestHandle::append`],
//! which blocks until its record is committed, or
//! [`IngestHandle::send_lines`], which does not wait at all (a proxy worker
//! must never wait on an fsync, as Envoy's access loggers never stall a
//! stream); one writer thread drains whatever is queued into a single
//! transaction, so concurrent callers share a sync, and a record is durable
//! once that transaction commits.

use crate::record::Prepared;
use crate::store::Store;
use crate::{Error, Result};
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Records committed.
    pub records: u64,
    /// Input lines read (blank ones included).
    pub lines: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

impl std::fmt::Display for IngestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.first_seq, self.last_seq) {
            (Some(first), Some(last)) => write!(
                f,
                "ingested {} records (seq {first}..={last})",
                self.records
            ),
            _ => write!(f, "ingested 0 records"),
        }
    }
}

/// Ingests JSON lines from a file-like `input`, `batch` records per
/// transaction (the last batch may be smaller). Blank lines are skipped. A
/// bad line stops the ingest with its line number; every batch before it is
/// committed, nothing after. `on_commit` hears each committed
/// `(first_seq, last_seq)`.
pub fn ingest_jsonl<R: Read>(
    store: &mut Store,
    input: R,
    batch: usize,
    on_commit: impl FnMut(u64, u64),
) -> Result<IngestReport> {
    ingest(store, input, batch, false, on_commit)
}

/// As [`ingest_jsonl`], for a live stream (a pipe, standard input): also
/// commits whenever no more input is buffered, so records are acknowledged
/// as they arrive instead of waiting for a batch to fill.
pub fn ingest_jsonl_stream<R: Read>(
    store: &mut Store,
    input: R,
    batch: usize,
    on_commit: impl FnMut(u64, u64),
) -> Result<IngestReport> {
    ingest(store, input, batch, true, on_commit)
}

fn ingest<R: Read>(
    store: &mut Store,
    input: R,
    batch: usize,
    flush_when_idle: bool,
    mut on_commit: impl FnMut(u64, u64),
) -> Result<IngestReport> {
    let batch = batch.max(1);
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut report = IngestReport::default();
    let mut pending: Vec<Prepared> = Vec::with_capacity(batch);
    let mut line = String::new();
    let mut flush = |store: &mut Store, pending: &mut Vec<Prepared>, report: &mut IngestReport| {
        if pending.is_empty() {
            return Ok::<(), Error>(());
        }
        let (first, last) = store.append_prepared(pending)?;
        report.records += pending.len() as u64;
        report.first_seq.get_or_insert(first);
        report.last_seq = Some(last);
        pending.clear();
        on_commit(first, last);
        Ok(())
    };
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            break;
        }
        report.lines += 1;
        let text = line.trim();
        if !text.is_empty() {
            match Prepared::from_json(text) {
                Ok(p) => pending.push(p),
                Err(e) => {
                    flush(store, &mut pending, &mut report)?;
                    return Err(Error::Line {
                        line: report.lines,
                        message: e.to_string(),
                    });
                }
            }
        }
        if pending.len() >= batch || (flush_when_idle && reader.buffer().is_empty()) {
            flush(store, &mut pending, &mut report)?;
        }
    }
    flush(store, &mut pending, &mut report)?;
    Ok(report)
}

enum Msg {
    Record(Box<Prepared>, mpsc::SyncSender<Result<u64, String>>),
    /// JSON lines no caller waits for, parsed by the writer.
    Lines(Vec<u8>),
    Close,
}

/// What the writer reports about lines sent with
/// [`IngestHandle::send_lines`], since no caller waits to hear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A line that is not a record was skipped. Its content is not given:
    /// it may hold what redaction was for.
    BadLine,
    /// The store refused a batch holding sent lines, and the writer has
    /// stopped rather than lose records silently; [`Ingestor::shutdown`]
    /// returns the error.
    Refused(String),
}

type OnNotice = Box<dyn Fn(Notice) + Send>;

/// A group-commit writer thread owning a [`Store`].
#[derive(Debug)]
pub struct Ingestor {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<Result<Store>>>,
}

/// A cloneable, `Send` and `Sync` handle for appending through an
/// [`Ingestor`].
#[derive(Debug, Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Record(..) => "Record",
            Msg::Lines(..) => "Lines",
            Msg::Close => "Close",
        })
    }
}

impl Ingestor {
    /// Starts the writer; at most `max_batch` records per transaction
    /// (a chunk of lines is never split, so a batch may run over by the
    /// rest of one chunk).
    pub fn spawn(store: Store, max_batch: usize) -> Result<Ingestor> {
        Ingestor::spawn_with(store, max_batch, |_| {})
    }

    /// As [`Ingestor::spawn`], telling `on_notice` (on the writer thread)
    /// about lines sent with [`IngestHandle::send_lines`].
    pub fn spawn_with(
        store: Store,
        max_batch: usize,
        on_notice: impl Fn(Notice) + Send + 'static,
    ) -> Result<Ingestor> {
        let max_batch = max_batch.max(1);
        // Unbounded, so that `send_lines` never blocks: a caller that
        // waits (`append`) has one record queued at a time anyway.
        let (tx, rx) = mpsc::channel::<Msg>();
        let on_notice: OnNotice = Box::new(on_notice);
        let thread = std::thread::Builder::new()
            .name("audit-ingest".into())
            .spawn(move || writer(store, rx, max_batch, on_notice))?;
        Ok(Ingestor {
            tx,
            thread: Some(thread),
        })
    }

    /// A handle for appending from any thread.
    pub fn handle(&self) -> IngestHandle {
        IngestHandle {
            tx: self.tx.clone(),
        }
    }

    /// Commits what was queued before it, seals a checkpoint and hands the
    /// store back; or the error that stopped the writer.
    pub fn shutdown(mut self) -> Result<Store> {
        let _ = self.tx.send(Msg::Close);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Ingest("writer thread panicked".into()))?,
            None => Err(Error::Ingest("already shut down".into())),
        }
    }
}

impl Drop for Ingestor {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.tx.send(Msg::Close);
            let _ = t.join();
        }
    }
}

impl IngestHandle {
    /// Appends a record; returns its seq once it is committed.
    pub fn append<T: serde::Serialize + ?Sized>(&self, record: &T) -> Result<u64> {
        self.submit(Prepared::from_serialize(record)?)
    }

    /// Appends one line of JSON; returns its seq once it is committed.
    pub fn append_json(&self, line: &str) -> Result<u64> {
        self.submit(Prepared::from_json(line)?)
    }

    /// Queues JSON lines (one record each; blank lines skipped) without
    /// waiting: they are parsed and committed by the writer with whatever
    /// else is queued, so the caller never waits on a commit's sync. What
    /// becomes of them is told to the ingestor's `on_notice`. `Err` only
    /// when the writer has stopped.
    pub fn send_lines(&self, lines: Vec<u8>) -> Result<()> {
        self.tx
            .send(Msg::Lines(lines))
            .map_err(|_| Error::Ingest("the writer has stopped".into()))
    }

    fn submit(&self, p: Prepared) -> Result<u64> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Record(Box::new(p), ack_tx))
            .map_err(|_| Error::Ingest("the writer has stopped".into()))?;
        ack_rx
            .recv()
            .map_err(|_| Error::Ingest("the writer stopped before committing".into()))?
            .map_err(Error::Ingest)
    }
}

type Ack = Option<mpsc::SyncSender<Result<u64, String>>>;

/// Parses each line of `chunk` into the batch, unacknowledged.
fn take_lines(chunk: &[u8], batch: &mut Vec<Prepared>, acks: &mut Vec<Ack>, on_notice: &OnNotice) {
    for line in chunk.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match std::str::from_utf8(line)
            .ok()
            .and_then(|l| Prepared::from_json(l).ok())
        {
            Some(p) => {
                batch.push(p);
                acks.push(None);
            }
            None => on_notice(Notice::BadLine),
        }
    }
}

fn writer(
    mut store: Store,
    rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    on_notice: OnNotice,
) -> Result<Store> {
    let mut batch: Vec<Prepared> = Vec::with_capacity(max_batch);
    let mut acks: Vec<Ack> = Vec::with_capacity(max_batch);
    let mut closing = false;
    let take = |msg: Msg, batch: &mut Vec<Prepared>, acks: &mut Vec<Ack>| match msg {
        Msg::Record(p, ack) => {
            batch.push(*p);
            acks.push(Some(ack));
            false
        }
        Msg::Lines(chunk) => {
            take_lines(&chunk, batch, acks, &on_notice);
            false
        }
        Msg::Close => true,
    };
    while !closing {
        match rx.recv() {
            Ok(msg) => closing = take(msg, &mut batch, &mut acks),
            Err(_) => closing = true,
        }
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(msg) => closing |= take(msg, &mut batch, &mut acks),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        match store.append_prepared(&batch) {
            Ok((first, _)) => {
                for (i, ack) in acks.drain(..).enumerate() {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(first + i as u64));
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let mut unheard = false;
                for ack in acks.drain(..) {
                    match ack {
                        Some(ack) => {
                            let _ = ack.send(Err(msg.clone()));
                        }
                        None => unheard = true,
                    }
                }
                if unheard {
                    on_notice(Notice::Refused(msg));
                    return Err(e);
                }
            }
        }
        batch.clear();
    }
    store.checkpoint()?;
    Ok(store)
}
