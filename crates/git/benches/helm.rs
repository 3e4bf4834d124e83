//! Helm rendering costs (issue 16), with the real Helm (`DRIFTGUARD_TEST_HELM`, or `helm` on
//! `PATH`) and the real charts of `testdata/charts`:
//!
//! - `helm/render_gatekeeper`: a snapshot of the largest chart (gatekeeper, 31 objects with its
//!   CRDs) from scratch: written out, rendered twice, parsed, compared;
//! - `helm/commit_touching_no_chart`: a sync after a commit that changes a plain manifest next
//!   to 50 releases (no render);
//! - printed once: the time of the first snapshot of 50 releases (the five charts ten times
//!   each) and this process's resident memory before and after (`VmRSS`), with the snapshot
//!   held.
//!
//! Run: `cargo bench -p driftguard-git --bench helm -- --sample-size 10`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::git;
use criterion::{Criterion, criterion_group, criterion_main};
use driftguard_config::GitConfig;
use driftguard_core::SecretHasher;
use driftguard_git::{GitSource, HelmOptions, ReadOptions, SyncOutcome};
use driftguard_test_support::copy_dir;

const CHARTS: [&str; 5] = [
    "podinfo",
    "ingress-nginx",
    "traefik",
    "alertmanager",
    "gatekeeper",
];

fn helm_binary() -> String {
    std::env::var("DRIFTGUARD_TEST_HELM").unwrap_or_else(|_| "helm".to_owned())
}

/// A bare origin and a work tree holding `copies` copies of each chart in `charts`.
struct Fixture {
    _base: tempfile::TempDir,
    work: PathBuf,
    url: String,
}

impl Fixture {
    fn new(charts: &[&str], copies: usize) -> Self {
        let base = tempfile::tempdir().unwrap();
        let origin = base.path().join("origin.git");
        std::fs::create_dir_all(&origin).unwrap();
        git(&origin, &["init", "--quiet", "--bare", "-b", "main"]);
        let work = base.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "--quiet", "-b", "main"]);
        for chart in charts {
            for i in 0..copies {
                copy_dir(
                    &driftguard_test_support::charts_dir().join(chart),
                    &work.join(format!("charts/{chart}-{i}")),
                );
            }
        }
        std::fs::write(work.join("plain.yaml"), configmap(0)).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "--quiet", "-m", "charts"]);
        git(
            &work,
            &["push", "--quiet", origin.to_str().unwrap(), "HEAD:main"],
        );
        let url = format!("file://{}", origin.display());
        Self {
            _base: base,
            work,
            url,
        }
    }

    fn commit_plain(&self, n: usize) {
        std::fs::write(self.work.join("plain.yaml"), configmap(n)).unwrap();
        git(&self.work, &["commit", "--quiet", "-am", "plain"]);
        let origin = self.work.parent().unwrap().join("origin.git");
        git(
            &self.work,
            &["push", "--quiet", origin.to_str().unwrap(), "HEAD:main"],
        );
    }

    fn source(&self, workdir: &Path) -> GitSource {
        let cfg = GitConfig {
            repository_url: self.url.clone(),
            default_branch: "main".into(),
            workdir: workdir.display().to_string(),
            ..GitConfig::default()
        };
        // Every chart in its own namespace is not needed: detection renders each copy as its
        // own release (named after its directory) in the default namespace.
        let options = ReadOptions::from_config(&cfg, "bench", SecretHasher::new(vec![1; 32]))
            .unwrap()
            .with_helm(HelmOptions {
                binary: helm_binary(),
                ..HelmOptions::default()
            });
        GitSource::open_with(&cfg, options).unwrap()
    }
}

fn configmap(n: usize) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  n: \"{n}\"\n")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("helm");
    group.measurement_time(Duration::from_secs(20));

    let gatekeeper = Fixture::new(&["gatekeeper"], 1);
    group.bench_function("render_gatekeeper", |b| {
        b.iter(|| {
            let workdir = tempfile::tempdir().unwrap();
            let mut source = gatekeeper.source(workdir.path());
            source.sync().unwrap();
            assert_eq!(source.snapshot().stats.releases_rendered, 1);
            assert!(source.snapshot().errors.is_empty());
        });
    });

    // 50 releases: the five charts, ten copies each.
    let fifty = Fixture::new(&CHARTS, 10);
    let workdir = tempfile::tempdir().unwrap();
    let before = rss_kib();
    let started = Instant::now();
    let mut source = fifty.source(workdir.path());
    source.sync().unwrap();
    let elapsed = started.elapsed();
    let after = rss_kib();
    let snapshot = source.snapshot();
    assert_eq!(snapshot.stats.releases_rendered, 50);
    // Copies of one chart define the same cluster-scoped objects (CRDs, ClusterRoles): the
    // first definition is kept, the others are reported; nothing else may fail.
    assert!(
        snapshot
            .errors
            .iter()
            .all(|e| e.message.contains("is also defined at")),
        "{:#?}",
        snapshot.errors
    );
    println!(
        "helm/first_snapshot_50_releases: {} objects ({} duplicate definitions) in {:.2} s; resident memory {} MiB before, {} MiB with the snapshot held (+{} MiB)",
        snapshot.objects.len(),
        snapshot.errors.len(),
        elapsed.as_secs_f64(),
        before / 1024,
        after / 1024,
        after.saturating_sub(before) / 1024
    );

    let mut n = 1;
    group.bench_function("commit_touching_no_chart", |b| {
        b.iter(|| {
            fifty.commit_plain(n);
            n += 1;
            let outcome = source.sync().unwrap();
            assert!(matches!(outcome, SyncOutcome::Updated { .. }));
            assert_eq!(source.snapshot().stats.releases_rendered, 0);
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
