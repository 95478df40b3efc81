#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::stamp;

#[test]
fn a_stamp_changes_with_any_write_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/a.txt"), "one").unwrap();
    let first = stamp(root).unwrap();
    assert_eq!(stamp(root), Some(first), "reading changes nothing");

    // Same size, contents rewritten in place, mtime set back: the ctime still moves.
    let mtime = std::fs::metadata(root.join("src/a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(root.join("src/a.txt"), "two").unwrap();
    std::fs::File::options()
        .write(true)
        .open(root.join("src/a.txt"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let rewritten = stamp(root).unwrap();
    assert_ne!(rewritten, first);

    std::fs::write(root.join("src/b.txt"), "").unwrap();
    let added = stamp(root).unwrap();
    assert_ne!(added, rewritten);
    std::fs::remove_file(root.join("src/b.txt")).unwrap();
    assert_ne!(stamp(root).unwrap(), added);
    assert_eq!(stamp(&root.join("missing")), None);
}
