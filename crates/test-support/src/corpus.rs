//! The real-world manifest corpus kept in the repository (`corpus/`).

use std::path::PathBuf;

/// The corpus directory: `DRIFTGUARD_CORPUS_DIR` when set (e.g. a larger corpus kept elsewhere),
/// else `<repo>/corpus` — the licence-clean copy in the repository (see `corpus/ATTRIBUTION.md`),
/// so a clone alone runs every corpus test.
///
/// Always `Some`: a corpus that is missing panics, under CI or not, since a corpus test that
/// does not run must never pass. (The `Option` stays so that callers read
/// `let Some(corpus) = corpus_dir() else { return };`.)
///
/// ```no_run
/// let Some(corpus) = driftguard_test_support::corpus_dir() else { return };
/// assert!(corpus.join("index.json").is_file());
/// ```
pub fn corpus_dir() -> Option<PathBuf> {
    let (dir, origin) = match std::env::var_os("DRIFTGUARD_CORPUS_DIR") {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), "DRIFTGUARD_CORPUS_DIR"),
        _ => (crate::repo_root().join("corpus"), "the repository"),
    };
    assert!(
        dir.join("index.json").is_file(),
        "the manifest corpus is missing: no index.json in {} (from {origin}); the repository \
         keeps it under corpus/ — restore it (git checkout -- corpus) or fix DRIFTGUARD_CORPUS_DIR",
        dir.display()
    );
    Some(dir)
}
