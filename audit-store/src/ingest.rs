//! Getting records in: from a JSONL file or stream (what `portcullis serve
//! --audit-log FILE` writes), and from a server, record by record.
//!
//! Both paths batch, because a commit's sync is the cost that dominates,
//! and both acknowledge only after the commit. [`ingest_jsonl`] commits a
//! batch when it is full *or* when no more input is buffered, so a slow
//! stream (`tail -f log | portcullis audit ingest -`) is committed as it
//! arrives rather than held back to fill a batch. [`Ingestor`] is group
//! commit for servers: any number of threads call [`IngestHandle::append`],
//! which blocks until its record is committed; one writer thread drains
//! whatever is queued into a single transaction, so concurrent callers share
//! a sync.

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
    Close,
}

/// A group-commit writer thread owning a [`Store`].
#[derive(Debug)]
pub struct Ingestor {
    tx: mpsc::SyncSender<Msg>,
    thread: Option<JoinHandle<Result<Store>>>,
}

/// A cloneable, `Send` handle for appending through an [`Ingestor`].
#[derive(Debug, Clone)]
pub struct IngestHandle {
    tx: mpsc::SyncSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Record(..) => "Record",
            Msg::Close => "Close",
        })
    }
}

impl Ingestor {
    /// Starts the writer; at most `max_batch` records per transaction.
    pub fn spawn(store: Store, max_batch: usize) -> Result<Ingestor> {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::sync_channel::<Msg>(max_batch * 4);
        let thread = std::thread::Builder::new()
            .name("audit-ingest".into())
            .spawn(move || writer(store, rx, max_batch))?;
        Ok(Ingestor {
            tx,
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> IngestHandle {
        IngestHandle {
            tx: self.tx.clone(),
        }
    }

    /// Commits what is queued, seals a checkpoint and hands the store back.
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

fn writer(mut store: Store, rx: mpsc::Receiver<Msg>, max_batch: usize) -> Result<Store> {
    let mut batch: Vec<Prepared> = Vec::with_capacity(max_batch);
    let mut acks: Vec<mpsc::SyncSender<Result<u64, String>>> = Vec::with_capacity(max_batch);
    let mut closing = false;
    while !closing {
        match rx.recv() {
            Ok(Msg::Record(p, ack)) => {
                batch.push(*p);
                acks.push(ack);
            }
            Ok(Msg::Close) | Err(_) => closing = true,
        }
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Msg::Record(p, ack)) => {
                    batch.push(*p);
                    acks.push(ack);
                }
                Ok(Msg::Close) => closing = true,
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        match store.append_prepared(&batch) {
            Ok((first, _)) => {
                for (i, ack) in acks.drain(..).enumerate() {
                    let _ = ack.send(Ok(first + i as u64));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for ack in acks.drain(..) {
                    let _ = ack.send(Err(msg.clone()));
                }
            }
        }
        batch.clear();
    }
    store.checkpoint()?;
    Ok(store)
}
