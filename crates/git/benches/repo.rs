//! Snapshot costs on a generated repository of 5,000 manifests: the full parse, a sync where
//! nothing changed (fetch only), and a sync where one file changed.
//!
//! Run: `cargo bench -p driftguard-git --bench repo -- --sample-size 10`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

mod common;

use common::git;
use criterion::{Criterion, criterion_group, criterion_main};
use driftguard_config::GitConfig;
use driftguard_core::SecretHasher;
use driftguard_git::{GitSource, ReadOptions, SyncOutcome, load_local};

const MANIFESTS: usize = 5_000;

fn manifest(i: usize, replicas: usize) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  labels:
    app: app-{i}
    team: team-{team}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: app-{i}
  template:
    metadata:
      labels:
        app: app-{i}
    spec:
      containers:
      - name: main
        image: registry.example.com/app-{i}:1.{i}.0
        ports:
        - containerPort: 8080
          protocol: TCP
        env:
        - name: LOG_LEVEL
          value: info
        resources:
          requests: {{cpu: 100m, memory: 128Mi}}
---
apiVersion: v1
kind: Service
metadata:
  name: app-{i}
spec:
  selector:
    app: app-{i}
  ports:
  - port: 80
    targetPort: 8080
",
        team = i % 17
    )
}

struct Fixture {
    _base: tempfile::TempDir,
    work: std::path::PathBuf,
    url: String,
}

fn fixture() -> Fixture {
    let base = tempfile::tempdir().unwrap();
    let origin = base.path().join("origin.git");
    let work = base.path().join("work");
    std::fs::create_dir_all(&origin).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    git(&origin, &["init", "--quiet", "--bare", "-b", "main"]);
    git(&work, &["init", "--quiet", "-b", "main"]);
    for i in 0..MANIFESTS {
        let dir = work.join(format!("team-{}", i % 50));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("app-{i}.yaml")), manifest(i, 2)).unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "generated"]);
    git(
        &work,
        &[
            "push",
            "--quiet",
            origin.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    Fixture {
        url: format!("file://{}", origin.display()),
        _base: base,
        work,
    }
}

fn config(url: &str, workdir: &Path) -> GitConfig {
    GitConfig {
        repository_url: url.to_owned(),
        workdir: workdir.display().to_string(),
        ..GitConfig::default()
    }
}

fn hasher() -> SecretHasher {
    SecretHasher::new(vec![1u8; 32])
}

fn bench(c: &mut Criterion) {
    let fx = fixture();
    let mut group = c.benchmark_group("repo_5000_manifests");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    // Full parse from Git: a fresh source over an existing clone (the fetch is local and
    // cheap; every file is read and parsed).
    let workdir = tempfile::tempdir().unwrap();
    {
        let mut warm =
            GitSource::open(&config(&fx.url, workdir.path()), "default", hasher()).unwrap();
        warm.sync().unwrap();
        assert_eq!(warm.snapshot().objects.len(), 2 * MANIFESTS);
        assert_eq!(warm.snapshot().stats.files_parsed, MANIFESTS);
    }
    group.bench_function("full_parse_git", |b| {
        b.iter(|| {
            let mut source =
                GitSource::open(&config(&fx.url, workdir.path()), "default", hasher()).unwrap();
            source.sync().unwrap();
            assert_eq!(source.snapshot().stats.files_parsed, MANIFESTS);
        })
    });

    // Full parse of the working tree (PATH mode, no Git).
    let options = ReadOptions::from_config(&GitConfig::default(), "default", hasher()).unwrap();
    group.bench_function("full_parse_local", |b| {
        b.iter(|| {
            let snap = load_local(&fx.work, &options, None).unwrap();
            assert_eq!(snap.objects.len(), 2 * MANIFESTS);
        })
    });

    // No change: fetch only.
    let mut source =
        GitSource::open(&config(&fx.url, workdir.path()), "default", hasher()).unwrap();
    source.sync().unwrap();
    group.bench_function("sync_no_change", |b| {
        b.iter(|| {
            assert!(matches!(
                source.sync().unwrap(),
                SyncOutcome::Unchanged { .. }
            ));
        })
    });

    // One file changed: fetch + walk + parse one file + reassemble. Each iteration commits a
    // new version of one file outside the timed section.
    let origin = fx.url.trim_start_matches("file://").to_owned();
    let mut round = 0usize;
    group.bench_function("sync_one_file_changed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                std::fs::write(fx.work.join("team-7/app-7.yaml"), manifest(7, 3 + round)).unwrap();
                git(&fx.work, &["commit", "--quiet", "-am", "bump"]);
                git(
                    &fx.work,
                    &["push", "--quiet", &origin, "HEAD:refs/heads/main"],
                );
                let started = std::time::Instant::now();
                let outcome = source.sync().unwrap();
                total += started.elapsed();
                let SyncOutcome::Updated { diff, .. } = outcome else {
                    panic!("expected an update");
                };
                assert_eq!(diff.changed.len(), 1);
                assert_eq!(source.snapshot().stats.files_parsed, 1);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
