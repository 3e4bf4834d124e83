//! Bad input: one clear error per file, the rest of the repository still used, last good
//! objects kept.

use driftguard_core::ResourceKey;
use driftguard_git::{GitSource, SyncOutcome};

use crate::support::{DEPLOY, Remote, TRANSPORTS, configmap, hasher};

/// Below the 100 000-byte `[[[[…` file, above the padded one.
pub const MAX_FILE_SIZE: u64 = 150_000;

/// Writes every kind of bad file next to a good one; returns the expected `(path, line)`s.
pub fn write_bad_files(write: &dyn Fn(&str, Vec<u8>)) -> Vec<(&'static str, Option<usize>)> {
    write("good.yaml", DEPLOY.as_bytes().to_vec());
    write(
        "malformed.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [oops\n".to_vec(),
    );
    let mut utf8 = configmap("bin", "x").into_bytes();
    utf8.extend_from_slice(b"  other: \xff\xfe\n");
    write("invalid-utf8.yaml", utf8);
    write(
        "big.yaml",
        format!(
            "{}  pad: {:?}\n",
            configmap("big", "x"),
            "p".repeat(200_000)
        )
        .into_bytes(),
    );
    write("deep.json", "[".repeat(100_000).into_bytes());
    // A null mapping key: kubectl refuses it too. (A duplicate key is no longer an error: the
    // last value is kept, as kubectl does, with a warning.)
    write(
        "empty-key.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n  ~: e\n".to_vec(),
    );
    write(
        "noname.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n".to_vec(),
    );
    vec![
        ("big.yaml", None),
        ("deep.json", Some(1)),
        ("empty-key.yaml", Some(5)),
        ("invalid-utf8.yaml", Some(7)),
        ("malformed.yaml", Some(4)),
        ("noname.yaml", Some(1)),
    ]
}

#[test]
fn each_bad_file_is_one_error_and_the_rest_is_used() {
    for transport in TRANSPORTS {
        let remote = Remote::new(transport);
        let expected = write_bad_files(&|path, bytes| remote.write(path, bytes));
        remote.commit("bad");
        let workdir = tempfile::tempdir().unwrap();
        let mut cfg = remote.config(workdir.path());
        cfg.max_file_size = MAX_FILE_SIZE;
        let mut source = GitSource::open(&cfg, "default", hasher()).unwrap();
        source.sync().unwrap();
        let snap = source.snapshot();
        assert_eq!(snap.stats.files_listed, 7);
        // The oversized file is refused before its bytes are read.
        assert_eq!(snap.stats.files_read, 6);
        assert_eq!(snap.objects.len(), 1);
        assert!(
            snap.get(&ResourceKey::new("apps", "Deployment", "default", "web"))
                .is_some()
        );
        let got: Vec<(&str, Option<usize>)> = snap
            .errors
            .iter()
            .map(|e| (e.path.as_str(), e.line))
            .collect();
        assert_eq!(got, expected, "{transport:?}: {:#?}", snap.errors);
        for error in &snap.errors {
            assert!(!error.message.is_empty());
            assert!(!error.to_string().contains("oops"), "{error}");
        }
        let messages: Vec<String> = snap.errors.iter().map(|e| e.message.clone()).collect();
        assert!(messages[0].contains("max_file_size"), "{messages:?}");
        assert!(
            messages[1].contains("max_depth") || messages[1].contains("recursion"),
            "{messages:?}"
        );
        assert!(messages[2].contains("null mapping key"), "{messages:?}");
        assert!(messages[3].contains("UTF-8"), "{messages:?}");
        assert!(messages[4].contains("invalid YAML"), "{messages:?}");
        assert!(messages[5].contains("metadata.name"), "{messages:?}");
    }
}

#[test]
fn a_file_that_stops_parsing_keeps_its_last_good_objects() {
    for transport in TRANSPORTS {
        let remote = Remote::new(transport);
        remote.write("a.yaml", DEPLOY);
        remote.write(
            "b.yaml",
            format!("{}---\n{}", configmap("one", "1"), configmap("two", "2")),
        );
        remote.commit("good");
        let workdir = tempfile::tempdir().unwrap();
        let mut source =
            GitSource::open(&remote.config(workdir.path()), "default", hasher()).unwrap();
        source.sync().unwrap();
        let good_commit = source.snapshot().commit.clone();
        assert_eq!(source.snapshot().objects.len(), 3);

        remote.write(
            "b.yaml",
            format!("{}---\nkind: [broken\n", configmap("one", "changed")),
        );
        remote.write("a.yaml", DEPLOY.replace("replicas: 2", "replicas: 3"));
        remote.commit("break b");
        let SyncOutcome::Updated { diff, .. } = source.sync().unwrap() else {
            panic!("expected an update");
        };
        let snap = source.snapshot();
        assert_eq!(snap.objects.len(), 3, "last good objects of b.yaml kept");
        assert_eq!(snap.errors.len(), 1);
        assert_eq!(snap.errors[0].path, "b.yaml");
        // The unclosed flow sequence is noticed at the end of the file.
        assert_eq!(snap.errors[0].line, Some(9));
        let one = snap
            .get(&ResourceKey::new("", "ConfigMap", "default", "one"))
            .unwrap();
        assert_eq!(one.object.value()["data"]["key"], "1");
        assert_eq!(one.source.commit, good_commit);
        assert_eq!(
            diff.changed,
            vec![ResourceKey::new("apps", "Deployment", "default", "web")]
        );

        // Still broken at the next commit (blob unchanged): still reported, not re-parsed.
        remote.write("c.yaml", configmap("three", "3"));
        remote.commit("another");
        source.sync().unwrap();
        let snap = source.snapshot();
        assert_eq!(snap.stats.files_parsed, 1);
        assert_eq!(snap.errors.len(), 1);
        assert_eq!(snap.objects.len(), 4);

        remote.write("b.yaml", configmap("one", "fixed"));
        remote.commit("fix");
        let SyncOutcome::Updated { diff, .. } = source.sync().unwrap() else {
            panic!("expected an update");
        };
        assert!(source.snapshot().errors.is_empty());
        assert_eq!(
            diff.removed,
            vec![ResourceKey::new("", "ConfigMap", "default", "two")]
        );
        assert_eq!(
            diff.changed,
            vec![ResourceKey::new("", "ConfigMap", "default", "one")]
        );
    }
}
