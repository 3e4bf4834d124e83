//! Repository URLs: stripping credentials for messages, and naming the clone directory.

use sha2::{Digest, Sha256};

/// The URL with any `user:password@` part removed, safe for messages and logs.
///
/// `https://user:token@host/repo.git` → `https://host/repo.git`; scp-like `git@host:repo` and
/// local paths are returned unchanged (a bare user name is not a secret).
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => format!(
            "{}{}{}",
            &url[..scheme_end + 3],
            &authority[at + 1..],
            &rest[authority_end..]
        ),
        None => url.to_owned(),
    }
}

/// The name of the clone directory for `url`: `repo-<16 hex of sha256(redacted url)>`.
///
/// Credentials are left out of the hash so that rotating a token keeps the same clone.
pub fn clone_dir_name(url: &str) -> String {
    let digest = Sha256::digest(redact(url).as_bytes());
    format!("repo-{}", &hex::encode(digest)[..16])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn strips_user_info() {
        assert_eq!(
            redact("https://user:s3cret@example.com/org/repo.git"),
            "https://example.com/org/repo.git"
        );
        assert_eq!(
            redact("https://tok@example.com:8443/r?x=1"),
            "https://example.com:8443/r?x=1"
        );
        assert_eq!(
            redact("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
        assert_eq!(redact("file:///tmp/repo"), "file:///tmp/repo");
        assert_eq!(
            redact("https://example.com/a@b/repo"),
            "https://example.com/a@b/repo"
        );
    }

    #[test]
    fn clone_dir_ignores_credentials() {
        assert_eq!(
            clone_dir_name("https://a:b@example.com/r.git"),
            clone_dir_name("https://example.com/r.git")
        );
        assert_ne!(
            clone_dir_name("https://example.com/r.git"),
            clone_dir_name("https://example.com/s.git")
        );
    }
}
