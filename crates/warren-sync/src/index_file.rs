//! Writes a git index (version 2) whose entries carry the stat data of files warren itself just
//! wrote, so git trusts them without re-reading their content. git has no plumbing that records
//! stat data without hashing every file again, and hashing a large repository twice more (once
//! for the trusted baseline, once for the agent's own `.git`) cost more than copying it.

use std::os::unix::fs::MetadataExt;

use crate::collect::{MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK};

/// One index entry: a path with its blob and the lstat data of the file as written.
#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    /// As git spells it: relative, `/`-separated.
    pub(crate) path: Vec<u8>,
    /// 0o100644, 0o100755 or 0o120000.
    pub(crate) mode: u32,
    /// Raw object id (20 bytes for SHA-1, 32 for SHA-256).
    pub(crate) oid: Vec<u8>,
    pub(crate) stat: Stat,
}

/// The stat fields git keeps, already cut to the 32 bits git compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stat {
    ctime: (u32, u32),
    mtime: (u32, u32),
    dev: u32,
    ino: u32,
    uid: u32,
    gid: u32,
    size: u32,
}

impl Stat {
    /// From lstat data (git records a symlink's own metadata, never its target's). Truncation is
    /// what git does too: it compares the low 32 bits of each field.
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        let low = |v: i64| v as u32;
        Self {
            ctime: (low(meta.ctime()), low(meta.ctime_nsec())),
            mtime: (low(meta.mtime()), low(meta.mtime_nsec())),
            dev: meta.dev() as u32,
            ino: meta.ino() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size() as u32,
        }
    }
}

/// Parses a hex object id into raw bytes; `None` if it is not hex of a known length.
pub(crate) fn raw_oid(hex: &str) -> Option<Vec<u8>> {
    if !matches!(hex.len(), 40 | 64) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Serialises `entries` (which must be sorted by path bytes, each path once, all oids of one
/// length) as an index file. The trailing checksum is left all zeros: git reads that as "not
/// computed" (the `index.skipHash` format) and only `git fsck` ever verifies a non-zero one.
pub(crate) fn encode(entries: &[IndexEntry], oid_len: usize) -> Vec<u8> {
    // Fixed part of an on-disk entry before the name: ten 32-bit fields, the oid, the flags.
    let fixed = 40 + oid_len + 2;
    let mut out = Vec::with_capacity(12 + entries.len() * (fixed + 40) + oid_len);
    out.extend_from_slice(b"DIRC");
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        let start = out.len();
        let s = &e.stat;
        for v in [
            s.ctime.0, s.ctime.1, s.mtime.0, s.mtime.1, s.dev, s.ino, e.mode, s.uid, s.gid, s.size,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&e.oid);
        // Stage 0, no flags; names of 0xFFF bytes or more store 0xFFF and rely on the NUL.
        let name_len = e.path.len().min(0xFFF) as u16;
        out.extend_from_slice(&name_len.to_be_bytes());
        out.extend_from_slice(&e.path);
        // 1 to 8 NULs, so each entry is a multiple of 8 bytes long.
        let len = fixed + e.path.len();
        let padded = (len + 8) & !7;
        out.resize(start + padded, 0);
    }
    out.resize(out.len() + oid_len, 0);
    out
}

/// The index mode for a file written with or without its executable bit, or a symlink.
pub(crate) fn mode_for(symlink: bool, executable: bool) -> u32 {
    match (symlink, executable) {
        (true, _) => MODE_SYMLINK,
        (false, true) => MODE_EXECUTABLE,
        (false, false) => MODE_FILE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_padded_to_eight_bytes_with_at_least_one_nul() {
        let entry = |path: &[u8]| IndexEntry {
            path: path.to_vec(),
            mode: MODE_FILE,
            oid: vec![0xab; 20],
            stat: Stat::default(),
        };
        // 62 fixed bytes + 2 name bytes = 64: needs a full 8 NULs to stay NUL-terminated.
        let out = encode(&[entry(b"ab")], 20);
        assert_eq!(out.len(), 12 + 72 + 20);
        let out = encode(&[entry(b"abc")], 20);
        assert_eq!(out.len(), 12 + 72 + 20);
        assert_eq!(&out[..4], b"DIRC");
        assert_eq!(raw_oid("0a").as_deref(), None);
        assert_eq!(raw_oid(&"0a".repeat(20)), Some(vec![0x0a; 20]));
    }
}
