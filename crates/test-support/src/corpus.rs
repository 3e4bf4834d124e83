//! The real-world manifest corpus kept beside the project (`../shared/corpus`).

use std::path::PathBuf;

/// The corpus directory: `DRIFTGUARD_CORPUS_DIR`, else `<repo>/../shared/corpus`.
///
/// The corpus is not part of the repository (its licences vary). When it is missing:
/// under CI (`CI=true`) this panics, since a corpus test that does not run must fail there;
/// elsewhere it prints a loud `CORPUS NOT FOUND — test did not run` and returns `None`, and the
/// caller returns early.
///
/// ```no_run
/// let Some(corpus) = driftguard_test_support::corpus_dir() else { return };
/// assert!(corpus.join("index.json").is_file());
/// ```
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("DRIFTGUARD_CORPUS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => crate::repo_root().join("..").join("shared").join("corpus"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if ci {
        panic!(
            "the manifest corpus is missing at {} (CI=true): copy shared/ beside the project or \
             set DRIFTGUARD_CORPUS_DIR",
            dir.display()
        );
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! CORPUS NOT FOUND — test did not run: nothing at {}\n\
         !!! set DRIFTGUARD_CORPUS_DIR or put shared/corpus beside the project\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
        dir.display()
    );
    None
}
