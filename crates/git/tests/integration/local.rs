//! PATH mode: a directory on disk, no Git.

use driftguard_config::GitConfig;
use driftguard_core::ResourceKey;
use driftguard_git::{ReadOptions, WORKING_TREE, load_local};

use crate::bad_input::write_bad_files;
use crate::support::{DEPLOY, configmap, hasher};

#[test]
fn reads_a_working_tree_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, bytes: Vec<u8>| {
        let target = dir.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    };
    let expected = write_bad_files(&write);
    write(
        ".git/config.yaml",
        configmap("never-read", "x").into_bytes(),
    );
    write(
        "k/kustomization.yaml",
        b"resources:\n- cm.yaml\nnamespace: kz\n".to_vec(),
    );
    write("k/cm.yaml", configmap("from-kustomize", "1").into_bytes());
    let cfg = GitConfig {
        max_file_size: crate::bad_input::MAX_FILE_SIZE,
        ..GitConfig::default()
    };
    let options = ReadOptions::from_config(&cfg, "default", hasher()).unwrap();
    let snap = load_local(dir.path(), &options, None).unwrap();
    assert_eq!(snap.commit, WORKING_TREE);
    assert_eq!(snap.stats.files_listed, 8);
    assert_eq!(snap.objects.len(), 2);
    let web = snap
        .get(&ResourceKey::new("apps", "Deployment", "default", "web"))
        .unwrap();
    assert_eq!(web.source.commit, WORKING_TREE);
    assert!(
        snap.get(&ResourceKey::new("", "ConfigMap", "kz", "from-kustomize"))
            .is_some()
    );
    let got: Vec<_> = snap
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.line))
        .collect();
    assert_eq!(got, expected);

    // Unchanged bytes are read (to hash them) but not parsed again.
    write(
        "good.yaml",
        DEPLOY.replace("replicas: 2", "replicas: 4").into_bytes(),
    );
    let next = load_local(dir.path(), &options, Some(&snap)).unwrap();
    assert_eq!(next.stats.files_parsed, 1, "only the changed file");
    assert_eq!(
        next.stats.files_reused, 5,
        "still-broken files are not parsed again"
    );
    assert_eq!(next.errors.len(), 6);
    let diff = snap.diff(&next);
    assert_eq!(
        diff.changed,
        vec![ResourceKey::new("apps", "Deployment", "default", "web")]
    );
    assert!(load_local(&dir.path().join("missing"), &options, None).is_err());
}

#[test]
fn many_files_parse_on_every_core_with_the_result_of_one_pass_in_order() {
    // 300 files (parsed on several threads): each defines its own ConfigMap and again the one of
    // the file before it; every tenth is broken. What is kept and what is reported is decided
    // in path order, as when the files are parsed one after another.
    let dir = tempfile::tempdir().unwrap();
    for i in 0..300 {
        let text = if i % 10 == 5 {
            "apiVersion: [\n".to_owned()
        } else if i == 0 {
            configmap("cm-000", "0")
        } else {
            format!(
                "{}---\n{}",
                configmap(&format!("cm-{i:03}"), &i.to_string()),
                configmap(&format!("cm-{:03}", i - 1), "again")
            )
        };
        std::fs::write(dir.path().join(format!("f-{i:03}.yaml")), text).unwrap();
    }
    let options = ReadOptions::from_config(&GitConfig::default(), "default", hasher()).unwrap();
    let snap = load_local(dir.path(), &options, None).unwrap();
    assert_eq!(snap.stats.files_parsed, 300);
    assert_eq!(snap.objects.len(), 300);
    for i in 0..300 {
        let key = ResourceKey::new("", "ConfigMap", "default", format!("cm-{i:03}"));
        let cm = snap.get(&key).unwrap();
        // The first definition in path order: the file of its own name, or the next one when
        // that file is broken.
        let (file, value) = if i % 10 == 5 {
            (i + 1, "again".to_owned())
        } else {
            (i, i.to_string())
        };
        assert_eq!(cm.source.path, format!("f-{file:03}.yaml"), "cm-{i:03}");
        assert_eq!(cm.object.value()["data"]["key"], value, "cm-{i:03}");
    }
    let reported: Vec<(String, bool)> = snap
        .errors
        .iter()
        .map(|e| (e.path.clone(), e.message.contains("also defined")))
        .collect();
    let mut expected = Vec::new();
    for i in 1..300 {
        if i % 10 == 5 {
            expected.push((format!("f-{i:03}.yaml"), false));
        } else if (i - 1) % 10 != 5 {
            expected.push((format!("f-{i:03}.yaml"), true));
        }
    }
    assert_eq!(reported, expected);
}
