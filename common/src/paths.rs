//! Paths from configuration files: resolved against the file's directory and normalised, so
//! that one file has one spelling however a config reaches it (`a/../b` is `b`) — the row store
//! of a training file is found again, Kubernetes' volume check sees where a path really is, and
//! printed paths are plain.

use std::path::{Component, Path, PathBuf};

/// `path` resolved against `base` (unless it is absolute) and normalised lexically: `.`
/// dropped, `..` removing the component before it (never above the root).
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
    normalise(&joined)
}

/// `path` with `.` dropped and each `..` removing the component before it (lexically: a `..`
/// after a symbolic link is taken textually, as `realpath -s` does).
pub fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_have_one_spelling() {
        let base = Path::new("/work/my");
        assert_eq!(
            resolve(base, Path::new("../runs/demo/data/train.parquet")),
            Path::new("/work/runs/demo/data/train.parquet")
        );
        assert_eq!(resolve(base, Path::new("./data/../data/x")), Path::new("/work/my/data/x"));
        assert_eq!(resolve(base, Path::new("/abs/./y/../z")), Path::new("/abs/z"));
        assert_eq!(normalise(Path::new("/../x")), Path::new("/x"), "never above the root");
        assert_eq!(normalise(Path::new("../a/../../b")), Path::new("../../b"));
        assert_eq!(normalise(Path::new("a/..")), Path::new("."));
    }
}
