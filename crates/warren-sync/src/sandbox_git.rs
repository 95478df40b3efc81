//! The agent's own repository inside the workspace, built while the files are copied: every byte
//! read for the copy is also streamed to one `git fast-import`, which hashes and packs it on
//! another core. `git add` of the finished workspace would read everything again and write one
//! compressed loose object per file, which cost more than the copy itself on a large repository.
//! fast-import reports each blob's id, so the index (with the stat data of the files as written)
//! is written by `index_file` without anything being hashed twice.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::error::{Result, SyncError};
use crate::git::{FALLBACK_EMAIL, FALLBACK_NAME, Git};
use crate::index_file::raw_oid;

const STEP: &str = "creating the workspace's own git repository";

/// fast-import's mark table from `sync_in`, kept in the baseline dir: also the trusted record
/// that warren made the workspace's repository.
pub(crate) const MARKS: &str = "workspace-git.marks";
/// Whole files up to this size travel as one message; larger ones in chunks of this size.
pub(crate) const CHUNK: usize = 1 << 20;
/// Messages in flight: bounds the memory the copy may run ahead of fast-import by.
const QUEUE: usize = 32;

/// The sending half: the copy loop hands every blob's bytes here.
pub(crate) struct BlobSink {
    tx: SyncSender<Vec<u8>>,
    next_mark: u32,
    /// Small blobs not sent yet.
    pending: Vec<u8>,
    /// (mark, mode, path) of every blob, for the commit.
    files: Vec<(u32, u32, Vec<u8>)>,
}

/// fast-import stopped reading (it failed); the thread's result says why.
#[derive(Debug)]
pub(crate) struct Closed;

impl BlobSink {
    /// Sends a whole blob (a small file, or a symlink's target) for `path`. Small blobs are
    /// batched into messages of about [`CHUNK`] bytes, so the queue bounds bytes, not files.
    pub(crate) fn blob(&mut self, path: &[u8], mode: u32, data: &[u8]) -> Result<u32, Closed> {
        let mark = self.mark(path, mode);
        let header = format!("blob\nmark :{mark}\ndata {}\n", data.len());
        self.pending.extend_from_slice(header.as_bytes());
        self.pending.extend_from_slice(data);
        self.pending.push(b'\n');
        if self.pending.len() >= CHUNK {
            self.flush()?;
        }
        Ok(mark)
    }

    /// Starts a blob of exactly `len` bytes, sent in chunks with [`Self::data`], closed with
    /// [`Self::end`].
    pub(crate) fn begin(&mut self, path: &[u8], mode: u32, len: u64) -> Result<u32, Closed> {
        let mark = self.mark(path, mode);
        let header = format!("blob\nmark :{mark}\ndata {len}\n");
        self.pending.extend_from_slice(header.as_bytes());
        self.flush()?;
        Ok(mark)
    }

    pub(crate) fn data(&self, chunk: Vec<u8>) -> Result<(), Closed> {
        self.tx.send(chunk).map_err(|_| Closed)
    }

    /// The newline after `data` is optional in the protocol, but keeps the stream readable.
    pub(crate) fn end(&mut self) -> Result<(), Closed> {
        self.pending.push(b'\n');
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Closed> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let msg = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK + 4096));
        self.tx.send(msg).map_err(|_| Closed)
    }

    fn mark(&mut self, path: &[u8], mode: u32) -> u32 {
        self.next_mark += 1;
        self.files.push((self.next_mark, mode, path.to_vec()));
        self.next_mark
    }

    /// Sends the baseline commit of every blob sent, then closes the stream.
    pub(crate) fn commit(mut self, branch: &str) -> Result<(), Closed> {
        self.flush()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let message = "warren baseline\n";
        let mut msg = format!(
            "commit refs/heads/{branch}\ncommitter {FALLBACK_NAME} <{FALLBACK_EMAIL}> {now} +0000\ndata {}\n{message}",
            message.len()
        )
        .into_bytes();
        for (mark, mode, path) in &self.files {
            msg.extend_from_slice(format!("M {mode:o} :{mark} ").as_bytes());
            quote_path(&mut msg, path);
            msg.push(b'\n');
        }
        msg.push(b'\n');
        self.tx.send(msg).map_err(|_| Closed)
    }
}

/// fast-import's C-style quoting, always applied so no path can be misread (a leading quote, a
/// newline, a space at the end).
pub(crate) fn quote_path(out: &mut Vec<u8>, path: &[u8]) {
    out.push(b'"');
    for &b in path {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\{b:03o}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Where fast-import runs and what it needs to know.
pub(crate) struct Importer {
    pub(crate) workspace: PathBuf,
    pub(crate) branch: String,
    pub(crate) object_format: String,
    /// A file outside the workspace for fast-import's mark → object id table.
    pub(crate) marks: PathBuf,
}

/// Opens the stream; run [`Importer::run`] with the receiver on another thread.
pub(crate) fn channel() -> (BlobSink, Receiver<Vec<u8>>) {
    let (tx, rx) = sync_channel(QUEUE);
    let sink = BlobSink {
        tx,
        next_mark: 0,
        pending: Vec::new(),
        files: Vec::new(),
    };
    (sink, rx)
}

impl Importer {
    /// Creates `workspace/.git` and imports the stream into it. Returns each mark's raw object id.
    pub(crate) fn run(&self, rx: Receiver<Vec<u8>>) -> Result<HashMap<u32, Vec<u8>>> {
        let git = |step: &str| {
            Git::isolated(step, &self.workspace)
                .arg("-C")
                .arg(&self.workspace)
        };
        let init = git(STEP)
            .args(["init", "-q", "--template=", "-b", &self.branch])
            .arg(format!("--object-format={}", self.object_format))
            .run();
        if let Err(e) = init {
            // Drain nothing: dropping the receiver makes the copy loop stop at its next send.
            drop(rx);
            return Err(e);
        }
        // Uncompressed: zlib at any level costs more CPU than the copy can hide on a small machine,
        // and fsync buys nothing for a repository that dies with its sandbox. No deltas:
        // fast-import would only try each blob against the one before it, at a high cost.
        git(STEP)
            .args(["-c", "pack.compression=0", "-c", "core.fsync=none"])
            .args(["fast-import", "--quiet", "--depth=0"])
            .arg(format!("--export-marks={}", self.marks.display()))
            .run_fed(move |stdin| {
                // Each message in one write: the copy batches small files into large messages.
                for msg in rx {
                    stdin.write_all(&msg)?;
                }
                Ok(())
            })?;
        read_marks(&self.marks)
    }
}

pub(crate) fn read_marks(path: &Path) -> Result<HashMap<u32, Vec<u8>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SyncError::io("reading fast-import's marks", path, e))?;
    let mut marks = HashMap::new();
    for line in text.lines() {
        let parsed = line.strip_prefix(':').and_then(|rest| {
            let (mark, oid) = rest.split_once(' ')?;
            Some((mark.parse::<u32>().ok()?, raw_oid(oid)?))
        });
        match parsed {
            Some((mark, oid)) => {
                marks.insert(mark, oid);
            }
            None => {
                return Err(SyncError::failed(
                    "reading fast-import's marks",
                    path,
                    format!("unexpected line {line:?}"),
                ));
            }
        }
    }
    Ok(marks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_so_fast_import_reads_them_back_exactly() {
        let mut out = Vec::new();
        quote_path(&mut out, b"a \"b\"\\c\nd\x7f\xff ");
        assert_eq!(out, b"\"a \\\"b\\\"\\\\c\\012d\\177\xff \"");
    }
}
