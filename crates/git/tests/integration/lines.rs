//! The line of each changed field, read again from the clone: at the commit its object was read
//! at, across commits that move it, while its file is broken, from `check`'s one-shot clone, and
//! from a `file://` repository `check` reads in place.

use driftguard_core::{FieldPath, ResourceKey};
use driftguard_git::{GitSource, Snapshot, load_once};

use crate::oneshot::oneshot_dirs;
use crate::support::{DEPLOY, Remote, Transport, hasher};

fn web() -> ResourceKey {
    ResourceKey::new("apps", "Deployment", "default", "web")
}

fn lines(snapshot: &Snapshot, paths: &[&str]) -> Vec<Option<usize>> {
    let desired = snapshot.get(&web()).expect("web is in Git");
    let fields: Vec<FieldPath> = paths.iter().map(|p| FieldPath::parse(p).unwrap()).collect();
    let refs: Vec<&FieldPath> = fields.iter().collect();
    snapshot.field_lines(desired, &refs)
}

const PATHS: [&str; 3] = [
    "spec.replicas",
    "spec.template.spec.containers[name=web].image",
    "spec.template.spec.containers[name=web].ports[containerPort=80,protocol=TCP]",
];

#[test]
fn field_lines_follow_each_commit_and_a_broken_file_keeps_the_lines_it_was_read_with() {
    let remote = Remote::new(Transport::File);
    remote.write("apps/web.yaml", format!("---\n{DEPLOY}"));
    remote.commit("first");
    let workdir = tempfile::tempdir().unwrap();
    let mut source = GitSource::open(&remote.config(workdir.path()), "default", hasher()).unwrap();
    source.sync().unwrap();
    assert_eq!(
        lines(source.snapshot(), &PATHS),
        [Some(7), Some(12), Some(14)]
    );

    // Three lines of comments above: the same object, every field three lines lower.
    remote.write("apps/web.yaml", format!("# a\n# b\n# c\n---\n{DEPLOY}"));
    remote.commit("comments");
    source.sync().unwrap();
    assert_eq!(
        lines(source.snapshot(), &PATHS),
        [Some(10), Some(15), Some(17)]
    );

    // The file stops parsing: its last good object stays, read at its own commit.
    remote.write("apps/web.yaml", "apiVersion: [\n");
    remote.commit("broken");
    source.sync().unwrap();
    assert_eq!(source.snapshot().errors.len(), 1);
    assert_eq!(
        lines(source.snapshot(), &PATHS),
        [Some(10), Some(15), Some(17)]
    );
}

#[test]
fn the_one_shot_clone_stays_while_its_snapshot_is_read_and_goes_with_it() {
    let remote = Remote::new(Transport::Daemon);
    remote.write("apps/web.yaml", DEPLOY);
    remote.commit("first");
    let parent = tempfile::tempdir().unwrap();
    let cfg = remote.config(parent.path());
    let options = driftguard_git::ReadOptions::from_config(&cfg, "default", hasher()).unwrap();
    let snapshot = load_once(&cfg, options).unwrap();
    assert_eq!(oneshot_dirs(parent.path()).len(), 1);
    assert_eq!(lines(&snapshot, &["spec.replicas"]), [Some(6)]);
    let copy = snapshot.clone();
    drop(snapshot);
    assert_eq!(lines(&copy, &PATHS[1..]), [Some(11), Some(13)]);
    drop(copy);
    assert_eq!(oneshot_dirs(parent.path()), Vec::<String>::new());
}

#[test]
fn a_file_url_is_read_in_place_and_its_lines_from_there() {
    let remote = Remote::new(Transport::File);
    remote.write("apps/web.yaml", DEPLOY);
    let head = remote.commit("first");
    let parent = tempfile::tempdir().unwrap();
    let cfg = remote.config(parent.path());
    let options = driftguard_git::ReadOptions::from_config(&cfg, "default", hasher()).unwrap();
    let snapshot = load_once(&cfg, options).unwrap();
    assert_eq!(snapshot.commit, head);
    assert_eq!(
        oneshot_dirs(parent.path()),
        Vec::<String>::new(),
        "no clone: the repository is on this disk"
    );
    assert_eq!(lines(&snapshot, &PATHS), [Some(6), Some(11), Some(13)]);
}
