//! Deterministic names: the owner tag, container names, volume names. Hashes are FNV-1a, written
//! out here rather than taken from std, because these names outlive a process (volumes persist
//! across runs and upgrades) and std's hasher is free to change between Rust releases.

use std::path::{Component, Path};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The first 8 hex digits of a stable 64-bit hash of `bytes`.
pub fn hash8(bytes: &[u8]) -> String {
    let mut h = FNV_OFFSET;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    format!("{:016x}", h)[..8].to_owned()
}

/// The owner tag of the current user: `hash8($USER)` (falling back to the uid), so containers of
/// different users on one engine can be told apart without putting a login name in labels.
pub fn default_owner() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| rustix::process::getuid().as_raw().to_string());
    hash8(user.as_bytes())
}

/// The key that ties performance volumes to one repository: `hash8` of its path.
pub fn repo_key(repo_root: &Path) -> String {
    hash8(repo_root.as_os_str().as_encoded_bytes())
}

/// `warren-vol-<hash8(repo)>-<hash8(rel)>`: the same repository and directory always get the same
/// volume, so a `node_modules` or `target` survives from one sandbox to the next.
pub fn volume_name(repo_root: &Path, rel: &str) -> String {
    volume_name_for_key(&repo_key(repo_root), rel)
}

pub(crate) fn volume_name_for_key(key: &str, rel: &str) -> String {
    format!("warren-vol-{key}-{}", hash8(rel.as_bytes()))
}

/// `warren-<owner>-<name>-<rand6>`: readable in `docker ps`, unique across repeated runs of one
/// sandbox name (the suffix), and attributable to a user (the owner tag).
pub(crate) fn container_name(owner: &str, name: &str) -> String {
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("warren-{owner}-{name}-{}", &rand[..6])
}

/// Checks a volume directory is a plain relative path inside the workspace (`node_modules`,
/// `crates/x/target`), so a setting can never mount a volume over something outside it.
pub(crate) fn check_volume_rel(rel: &str) -> Result<(), String> {
    let path = Path::new(rel);
    let plain = !rel.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(part) if part.to_str().is_some()));
    if plain && !rel.contains(',') && !rel.ends_with('/') {
        Ok(())
    } else {
        Err(format!(
            "volume directory {rel:?} must be a relative path inside the workspace, without '..'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_short() {
        // Pinned: changing the hash would orphan every existing volume.
        assert_eq!(hash8(b""), "cbf29ce4");
        assert_eq!(hash8(b"node_modules"), hash8(b"node_modules"));
        assert_ne!(hash8(b"node_modules"), hash8(b"target"));
        assert_eq!(hash8(b"x").len(), 8);
    }

    #[test]
    fn volume_names_are_deterministic() {
        let a = volume_name(Path::new("/src/app"), "node_modules");
        assert_eq!(a, volume_name(Path::new("/src/app"), "node_modules"));
        assert_ne!(a, volume_name(Path::new("/src/other"), "node_modules"));
        assert_ne!(a, volume_name(Path::new("/src/app"), "target"));
        assert!(a.starts_with("warren-vol-") && a.len() == "warren-vol-".len() + 17);
    }

    #[test]
    fn container_names_follow_the_rule() {
        let name = container_name("abcd1234", "fix-bug");
        assert!(name.starts_with("warren-abcd1234-fix-bug-"), "{name}");
        assert_eq!(name.len(), "warren-abcd1234-fix-bug-".len() + 6);
        assert_ne!(name, container_name("abcd1234", "fix-bug"));
    }

    #[test]
    fn volume_dirs_must_stay_inside_the_workspace() {
        assert!(check_volume_rel("node_modules").is_ok());
        assert!(check_volume_rel("crates/a/target").is_ok());
        for bad in ["", "/abs", "../up", "a/../b", "./x", "a,b", "x/"] {
            assert!(check_volume_rel(bad).is_err(), "{bad}");
        }
    }
}
