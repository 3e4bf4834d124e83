//! What the line of a changed field costs (`Snapshot::field_lines`): nothing resident per
//! object, a read of one blob and a parse of one document on a cache miss, a hash lookup on a
//! hit.
//!
//! The repository holds 5,000 objects (2,500 two-document files) plus one file of 200
//! Deployments, the worst case of a miss (the last document: every document before it is read).
//! Printed before the timings: the resident size of what this adds (per object: none; the
//! snapshot's handle; a change's `source_line`) and the memory the full cache takes.
//!
//! Run: `cargo bench -p driftguard-git --bench lines`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

mod common;

use common::git;
use criterion::{Criterion, criterion_group, criterion_main};
use driftguard_config::GitConfig;
use driftguard_core::{Change, DesiredObject, FieldPath, ResourceKey, SecretHasher};
use driftguard_git::{GitSource, Snapshot, SourceFiles};

const FILES: usize = 2_500;
const BIG: usize = 200;

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: main
        image: registry.example.com/{name}:1.0.0
        ports:
        - containerPort: 8080
        env:
        - name: LOG_LEVEL
          value: info
        resources:
          requests: {{cpu: 100m, memory: 128Mi}}
"
    )
}

fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n    app: {name}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
    )
}

/// A clone of a generated repository and its snapshot.
fn fixture(base: &Path) -> GitSource {
    let origin = base.join("origin.git");
    let work = base.join("work");
    std::fs::create_dir_all(&origin).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    git(&origin, &["init", "--quiet", "--bare", "-b", "main"]);
    git(&work, &["init", "--quiet", "-b", "main"]);
    for i in 0..FILES {
        let dir = work.join(format!("team-{}", i % 50));
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("app-{i}");
        std::fs::write(
            dir.join(format!("{name}.yaml")),
            format!("{}---\n{}", deployment(&name), service(&name)),
        )
        .unwrap();
    }
    let big: Vec<String> = (0..BIG).map(|i| deployment(&format!("big-{i}"))).collect();
    std::fs::write(work.join("big.yaml"), big.join("---\n")).unwrap();
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
    let cfg = GitConfig {
        repository_url: format!("file://{}", origin.display()),
        workdir: base.join("clones").display().to_string(),
        ..GitConfig::default()
    };
    let mut source = GitSource::open(&cfg, "default", SecretHasher::new(vec![1u8; 32])).unwrap();
    source.sync().unwrap();
    assert_eq!(source.snapshot().objects.len(), 2 * FILES + BIG);
    source
}

fn object<'s>(snapshot: &'s Snapshot, name: &str) -> &'s DesiredObject {
    snapshot
        .get(&ResourceKey::new("apps", "Deployment", "default", name))
        .unwrap()
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn bench(c: &mut Criterion) {
    let base = tempfile::tempdir().unwrap();
    let source = fixture(base.path());
    let snapshot = source.snapshot();
    let replicas = FieldPath::parse("spec.replicas").unwrap();
    let image = FieldPath::parse("spec.template.spec.containers[name=main].image").unwrap();
    assert_eq!(
        snapshot.field_lines(object(snapshot, "app-7"), &[&replicas, &image]),
        [Some(8), Some(19)]
    );

    eprintln!(
        "resident: per desired object 0 bytes (DesiredObject is {} bytes, unchanged); per \
         snapshot {} bytes (SourceFiles) + one shared handle; per change {} bytes (Change, \
         source_line included) on drifted records only",
        std::mem::size_of::<DesiredObject>(),
        std::mem::size_of::<SourceFiles>(),
        std::mem::size_of::<Change>(),
    );
    // The cache at its largest: two generations of 4,096 answers, paths of a typical depth.
    let before = rss();
    let app = object(snapshot, "app-11");
    for i in 0..20_000 {
        let field = FieldPath::parse(&format!(
            "spec.template.spec.containers[name=main].env[name=VAR_{i}].value"
        ))
        .unwrap();
        snapshot.field_lines(app, &[&field]);
    }
    eprintln!(
        "cache full (8,192 answers): {} KiB resident more",
        rss().saturating_sub(before) / 1024
    );

    let mut group = c.benchmark_group("field_lines");
    group.measurement_time(Duration::from_secs(10));
    // A miss: each iteration asks a path never asked before (read the blob, parse the document).
    let mut n = 0usize;
    let fresh = |n: &mut usize| {
        *n += 1;
        FieldPath::parse(&format!("metadata.labels.added-{n}")).unwrap()
    };
    let small = object(snapshot, "app-1234");
    group.bench_function("miss_two_document_file", |b| {
        b.iter(|| {
            let field = fresh(&mut n);
            assert_eq!(snapshot.field_lines(small, &[&field]), [Some(5)]);
        })
    });
    let last = object(snapshot, &format!("big-{}", BIG - 1));
    group.bench_function("miss_last_of_200_documents", |b| {
        b.iter(|| {
            let field = fresh(&mut n);
            assert!(snapshot.field_lines(last, &[&field])[0].is_some());
        })
    });
    group.bench_function("hit", |b| {
        b.iter(|| {
            assert_eq!(
                snapshot.field_lines(small, &[&replicas, &image]),
                [Some(8), Some(19)]
            );
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
