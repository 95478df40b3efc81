#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot set up its files should stop at once"
)]

use std::os::unix::fs::PermissionsExt;

use warren_domain::{ReasonCode, UserFacing};

use super::*;

/// An archive entry written header by header, so tests can say what no honest packer would.
fn entry(b: &mut tar::Builder<Vec<u8>>, path: &[u8], kind: EntryType, data: &[u8], link: &[u8]) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..path.len()].copy_from_slice(path);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    b.append(&header, data).unwrap();
}

fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

struct Dirs {
    _tmp: tempfile::TempDir,
    /// Where the archive goes; `outside` is its sibling, which nothing may reach.
    dest: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("nest/dest");
    let outside = tmp.path().join("nest/outside");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    Dirs {
        _tmp: tmp,
        dest,
        outside,
    }
}

fn refused(bytes: &[u8], limits: &Limits) -> SyncError {
    let d = dirs();
    let err = unpack_untrusted(bytes, &d.dest, limits).expect_err("the archive was accepted");
    assert_eq!(err.reason_code(), ReasonCode::UnsafeSandboxOutput, "{err}");
    let nest = d.dest.parent().unwrap();
    assert!(
        std::fs::read_dir(&d.outside).unwrap().next().is_none(),
        "something was written outside"
    );
    let mut names: Vec<_> = std::fs::read_dir(nest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["dest", "outside"],
        "something was written next to dest"
    );
    err
}

#[test]
fn a_packed_tree_comes_back_as_it_was() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    std::fs::create_dir_all(root.join("src/deep")).unwrap();
    std::fs::create_dir_all(root.join(".git/refs/heads")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("README.md"), "# hi\n").unwrap();
    std::fs::write(root.join("src/deep/lib.rs"), "fn x() {}\n").unwrap();
    std::fs::write(root.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("src/deep/lib.rs", root.join("lib.rs")).unwrap();
    std::os::unix::fs::symlink("../README.md", root.join("src/readme")).unwrap();

    let mut packed = Vec::new();
    pack_dir(root, &mut packed).unwrap();
    let d = dirs();
    let report = unpack_untrusted(&packed[..], &d.dest, &Limits::default()).unwrap();
    assert_eq!((report.files, report.symlinks), (4, 2));
    let read = |p: &str| std::fs::read_to_string(d.dest.join(p)).unwrap();
    assert_eq!(read("README.md"), "# hi\n");
    assert_eq!(read("src/deep/lib.rs"), "fn x() {}\n");
    assert_eq!(read(".git/HEAD"), "ref: refs/heads/main\n");
    assert!(d.dest.join(".git/refs/heads").is_dir());
    assert!(d.dest.join("empty").is_dir());
    let mode = |p: &str| {
        std::fs::metadata(d.dest.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("run.sh") & 0o111, 0o111);
    assert_eq!(mode("README.md") & 0o111, 0);
    assert_eq!(
        std::fs::read_link(d.dest.join("lib.rs")).unwrap(),
        Path::new("src/deep/lib.rs")
    );
    assert_eq!(
        std::fs::read_link(d.dest.join("src/readme")).unwrap(),
        Path::new("../README.md")
    );
}

#[test]
fn parent_components_and_absolute_paths_are_refused() {
    for path in [
        &b"../escape"[..],
        b"ok/../../escape",
        b"/tmp/escape",
        b".git/../../escape",
    ] {
        let bytes = archive(|b| {
            entry(b, b"fine.txt", EntryType::Regular, b"x", b"");
            entry(b, path, EntryType::Regular, b"pwned", b"");
        });
        let err = refused(&bytes, &Limits::default());
        assert!(matches!(err, SyncError::Unsafe { .. }), "{err}");
    }
}

#[test]
fn symlinks_that_lead_out_are_refused() {
    for (at, target) in [
        (&b"link"[..], &b"../outside"[..]),
        (b"a/b/link", b"../../../outside"),
        (b"link", b"/etc/passwd"),
        (b"a/link", b"x/../../.."),
    ] {
        let bytes = archive(|b| entry(b, at, EntryType::Symlink, b"", target));
        let err = refused(&bytes, &Limits::default());
        assert!(err.to_string().contains("symlink"), "{err}");
    }
}

#[test]
fn nothing_is_written_through_a_symlink_the_archive_made() {
    // `door` points inside (allowed), but a later entry beneath it would be written through it.
    let bytes = archive(|b| {
        entry(b, b"inside", EntryType::Directory, b"", b"");
        entry(b, b"door", EntryType::Symlink, b"", b"inside");
        entry(b, b"door/x", EntryType::Regular, b"through", b"");
    });
    let err = refused(&bytes, &Limits::default());
    assert!(err.to_string().contains("symlink"), "{err}");
}

#[test]
fn hard_links_and_special_files_are_refused() {
    for (kind, link) in [
        (EntryType::Link, &b"../outside/x"[..]),
        (EntryType::Fifo, b""),
        (EntryType::Char, b""),
    ] {
        let bytes = archive(|b| entry(b, b"odd", kind, b"", link));
        refused(&bytes, &Limits::default());
    }
}

#[test]
fn sizes_over_the_limits_are_refused() {
    let limits = Limits {
        max_file_bytes: 8,
        max_total_bytes: 12,
        max_files: 3,
    };
    let big = archive(|b| entry(b, b"big", EntryType::Regular, b"123456789", b""));
    let err = refused(&big, &limits);
    assert!(
        matches!(
            err,
            SyncError::LimitExceeded {
                key: "sync.max_file_bytes",
                ..
            }
        ),
        "{err}"
    );
    let total = archive(|b| {
        entry(b, b"a", EntryType::Regular, b"12345678", b"");
        entry(b, b"b", EntryType::Regular, b"12345678", b"");
    });
    let err = refused(&total, &limits);
    assert!(
        matches!(
            err,
            SyncError::LimitExceeded {
                key: "sync.max_total_bytes",
                ..
            }
        ),
        "{err}"
    );
    let many = archive(|b| {
        for name in [b"a", b"b", b"c", b"d"] {
            entry(b, name, EntryType::Regular, b"", b"");
        }
    });
    let err = refused(&many, &limits);
    assert!(
        matches!(
            err,
            SyncError::LimitExceeded {
                key: "sync.max_files",
                ..
            }
        ),
        "{err}"
    );
}
