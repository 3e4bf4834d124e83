//! Safe defaults (issue 14): without a token the API listens on loopback only, and a
//! non-loopback address without a token needs `server.allow_unauthenticated: true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use driftguard_config::{Exposure, LoadOptions, Loaded, Origin, load};

fn load_with(file: Option<&str>, env: &[(&str, &str)]) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let file = file.map(|text| {
        let path = dir.path().join("driftguard.yaml");
        std::fs::write(&path, text).unwrap();
        path
    });
    load(&LoadOptions {
        file,
        search_dir: Some(PathBuf::from("/nonexistent-driftguard-dir")),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        flags: Vec::new(),
    })
    .unwrap()
}

#[test]
fn without_a_token_the_default_address_is_loopback() {
    let loaded = load_with(None, &[]);
    assert_eq!(loaded.config.server.address, "127.0.0.1");
    assert_eq!(loaded.origin("server.address"), Origin::Default);
    assert!(!loaded.config.server.allow_unauthenticated);
    assert_eq!(loaded.config.server.exposure(), Ok(Exposure::Loopback));

    // An empty token is no token.
    let loaded = load_with(None, &[("DRIFTGUARD_SERVER__AUTH_TOKEN", "")]);
    assert_eq!(loaded.config.server.address, "127.0.0.1");
}

#[test]
fn with_a_token_the_default_address_is_every_interface() {
    for (file, env) in [
        (Some("server:\n  auth_token: s3cret\n"), vec![]),
        (None, vec![("DRIFTGUARD_SERVER__AUTH_TOKEN", "s3cret")]),
    ] {
        let loaded = load_with(file, &env);
        assert_eq!(loaded.config.server.address, "0.0.0.0");
        assert_eq!(loaded.config.server.exposure(), Ok(Exposure::Authenticated));
    }
}

#[test]
fn an_explicit_address_always_wins() {
    let loaded = load_with(
        Some("server:\n  address: 127.0.0.1\n  auth_token: s3cret\n"),
        &[],
    );
    assert_eq!(loaded.config.server.address, "127.0.0.1");
    assert_eq!(loaded.config.server.exposure(), Ok(Exposure::Loopback));

    let loaded = load_with(None, &[("DRIFTGUARD_SERVER__ADDRESS", "::1")]);
    assert_eq!(loaded.config.server.exposure(), Ok(Exposure::Loopback));
}

#[test]
fn a_non_loopback_address_without_a_token_is_refused_naming_the_keys() {
    for address in ["0.0.0.0", "::", "10.1.2.3", "::ffff:10.1.2.3"] {
        let loaded = load_with(None, &[("DRIFTGUARD_SERVER__ADDRESS", address)]);
        let message = loaded.config.server.exposure().unwrap_err();
        for key in [
            "server.auth_token",
            "server.address",
            "server.allow_unauthenticated",
            "DRIFTGUARD_SERVER__ALLOW_UNAUTHENTICATED",
            address,
        ] {
            assert!(message.contains(key), "{address}: {message} names {key}");
        }
    }
    // IPv4-mapped loopback is loopback.
    let loaded = load_with(None, &[("DRIFTGUARD_SERVER__ADDRESS", "::ffff:127.0.0.1")]);
    assert_eq!(loaded.config.server.exposure(), Ok(Exposure::Loopback));
}

#[test]
fn the_opt_in_allows_an_open_api_from_file_or_environment() {
    let loaded = load_with(
        Some("server:\n  address: 0.0.0.0\n  allow_unauthenticated: true\n"),
        &[],
    );
    assert_eq!(
        loaded.config.server.exposure(),
        Ok(Exposure::Unauthenticated)
    );
    let loaded = load_with(
        None,
        &[
            ("DRIFTGUARD_SERVER__ADDRESS", "0.0.0.0"),
            ("DRIFTGUARD_SERVER__ALLOW_UNAUTHENTICATED", "true"),
        ],
    );
    assert_eq!(
        loaded.config.server.exposure(),
        Ok(Exposure::Unauthenticated)
    );
    assert_eq!(
        loaded.origin("server.allow_unauthenticated"),
        Origin::Env("DRIFTGUARD_SERVER__ALLOW_UNAUTHENTICATED".to_owned())
    );
    // The opt-in alone does not open anything: the default stays loopback.
    let loaded = load_with(
        None,
        &[("DRIFTGUARD_SERVER__ALLOW_UNAUTHENTICATED", "true")],
    );
    assert_eq!(loaded.config.server.address, "127.0.0.1");
}
