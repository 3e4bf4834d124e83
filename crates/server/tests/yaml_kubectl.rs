//! DriftGuard reads YAML exactly as kubectl does: a differential test against the real kubectl.
//!
//! The same bytes go to `kubectl create --dry-run=client -o json --validate=false -f FILE`
//! (client side: sigs.k8s.io/yaml, then JSON into an unstructured object) and to DriftGuard's
//! manifest reader, and the two objects must be equal — for every file of `../shared/corpus`
//! and for generated scalars (every YAML 1.1 spelling of numbers, booleans, nulls and
//! timestamps, plain, quoted and tagged, as values and as mapping keys), put into a ConfigMap
//! under an unknown top-level field (`--validate=false` keeps it). Where kubectl refuses a
//! file, DriftGuard must refuse it too.
//!
//! kubectl needs the control plane for its REST mapping (`DRIFTGUARD_TEST_KUBECONFIG`).
//!
//! Known difference, left out of the generated cases: a plain `-` directly followed by `,` or
//! `}` in a flow collection (`[-, x]`) is the string "-" to kubectl and a syntax error to the
//! strict parser; the file is then read by the lenient one when it can be read exactly.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Mutex;

use driftguard_git::manifest::{Limits, parse_objects};
use driftguard_test_support::cluster::TestCluster;
use driftguard_test_support::corpus_dir;
use serde_json::Value;

/// What kubectl made of a file: its objects, or its error.
fn kubectl_objects(cluster: &TestCluster, file: &Path) -> Result<Vec<Value>, String> {
    let path = file.to_str().expect("UTF-8 path");
    let out = cluster
        .kubectl(&[
            "create",
            "--dry-run=client",
            "-o",
            "json",
            "--validate=false",
            "-f",
            path,
        ])
        .map_err(|e| format!("{e:#}"))?;
    // One JSON document per object (several when the file has several).
    let mut objects = Vec::new();
    for value in serde_json::Deserializer::from_str(&out).into_iter::<Value>() {
        objects.extend(split_list(
            value.map_err(|e| format!("kubectl output: {e}"))?,
        ));
    }
    Ok(objects)
}

/// kubectl prints one object alone and several as a `List`.
fn split_list(value: Value) -> Vec<Value> {
    let is_wrapper = value["kind"] == "List"
        && value["apiVersion"] == "v1"
        && value.get("items").is_some_and(Value::is_array)
        && value
            .get("metadata")
            .is_some_and(|m| m == &serde_json::json!({"resourceVersion": ""}));
    match value {
        Value::Object(mut map) if is_wrapper => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        other => vec![other],
    }
}

/// What DriftGuard's reader made of the same file.
fn driftguard_objects(text: &str) -> Result<Vec<Value>, String> {
    parse_objects(text, &Limits::default())
        .map(|objects| objects.into_iter().map(|o| o.value).collect())
        .map_err(|e| format!("line {:?}: {}", e.line, e.message))
}

/// Equal as kubectl's object: integers that fit `i64` are integers on both sides; any other
/// number is a float on both sides (serde_json reads a wide integer kubectl printed as `u64`)
/// and equal within one ULP (serde_json's float reading is not always correctly rounded).
fn same(ours: &Value, theirs: &Value, path: &str, diffs: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let equal = match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => x == y,
                (None, None) => match (a.is_f64(), a.as_f64(), b.as_f64()) {
                    (true, Some(x), Some(y)) => {
                        x == y || (x.to_bits() as i64 - y.to_bits() as i64).abs() <= 1
                    }
                    _ => false,
                },
                _ => false,
            };
            if !equal {
                diffs.push(format!("{path}: DriftGuard {a:?}, kubectl {b:?}"));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => same(value, other, &format!("{path}.{key}"), diffs),
                    None => diffs.push(format!("{path}.{key}: only DriftGuard has it ({value})")),
                }
            }
            for (key, value) in b {
                if !a.contains_key(key) {
                    diffs.push(format!("{path}.{key}: only kubectl has it ({value})"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same(x, y, &format!("{path}[{i}]"), diffs);
            }
        }
        (a, b) if a == b => {}
        (a, b) => diffs.push(format!("{path}: DriftGuard {a}, kubectl {b}")),
    }
}

/// Compares one file; `None` when both agree (same objects, or both refuse it).
fn compare_file(cluster: &TestCluster, file: &Path, text: &str) -> Option<String> {
    let ours = driftguard_objects(text);
    let theirs = kubectl_objects(cluster, file);
    match (ours, theirs) {
        (Ok(ours), Ok(mut theirs)) => {
            if ours.len() != theirs.len() {
                return Some(format!(
                    "{}: DriftGuard found {} objects, kubectl {}",
                    file.display(),
                    ours.len(),
                    theirs.len()
                ));
            }
            let mut diffs = Vec::new();
            for (i, (a, b)) in ours.iter().zip(theirs.iter_mut()).enumerate() {
                // kubectl sets the namespace of its context on namespaced objects without one;
                // DriftGuard sets `kubernetes.default_namespace` later, not in the reader.
                if a.pointer("/metadata/namespace").is_none()
                    && let Some(Value::Object(metadata)) = b.get_mut("metadata")
                {
                    metadata.remove("namespace");
                }
                same(a, b, &format!("#{i}"), &mut diffs);
            }
            (!diffs.is_empty()).then(|| format!("{}:\n  {}", file.display(), diffs.join("\n  ")))
        }
        (Err(_), Err(_)) => None,
        (Ok(_), Err(error)) if error.contains("no matches for kind") => None,
        (Ok(ours), Err(error)) => Some(format!(
            "{}: kubectl refuses it ({}), DriftGuard reads {} object(s)",
            file.display(),
            error.lines().last().unwrap_or_default(),
            ours.len()
        )),
        (Err(error), Ok(_)) => Some(format!(
            "{}: kubectl reads it, DriftGuard refuses it: {error}",
            file.display()
        )),
    }
}

/// Runs `compare_file` over files on a few threads; returns the disagreements.
fn compare_all(cluster: &TestCluster, files: Vec<(std::path::PathBuf, String)>) -> Vec<String> {
    let queue = Mutex::new(files);
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let Some((file, text)) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    if let Some(problem) = compare_file(cluster, &file, &text) {
                        problems.lock().unwrap().push(problem);
                    }
                }
            });
        }
    });
    let mut problems = problems.into_inner().unwrap();
    problems.sort();
    problems
}

#[test]
fn cluster_yaml_corpus_reads_as_kubectl_does() {
    let cluster = TestCluster::shared();
    let Some(corpus) = corpus_dir() else { return };
    let mut files = Vec::new();
    for entry in walk(&corpus) {
        let name = entry.to_string_lossy();
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            let text = std::fs::read_to_string(&entry).expect("corpus file");
            files.push((entry, text));
        }
    }
    assert!(files.len() >= 295, "the corpus lost files: {}", files.len());
    let count = files.len();
    let problems = compare_all(&cluster, files);
    assert!(
        problems.is_empty(),
        "{} of {count} corpus files read differently:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("corpus directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Many spellings of YAML 1.1 scalars (plain text, before quoting or tagging).
fn spellings() -> Vec<String> {
    let bodies = [
        "0",
        "00",
        "7",
        "08",
        "09.5",
        "0755",
        "0_755",
        "0o17",
        "0O17",
        "0o8",
        "0x1F",
        "0X1f",
        "0x_1F",
        "0xG",
        "0x",
        "0b101",
        "0B11",
        "0b2",
        "1_000",
        "1__0",
        "_1",
        "1_",
        "12",
        "1.5",
        "1.",
        ".5",
        "1e3",
        "1E3",
        "1e+3",
        "1e-3",
        "1.5e3",
        "1_0.5",
        ".5e3",
        "._5",
        ".e5",
        "1e",
        "e3",
        "1e400",
        "1e-400",
        "1e21",
        "1e20",
        "1e6",
        "123456.0",
        "0.1",
        "1e-7",
        "5e-324",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999",
        "0x7FFFFFFFFFFFFFFF",
        "0x8000000000000000",
        "0xFFFFFFFFFFFFFFFF",
        "0x10000000000000000",
        "0o1777777777777777777777",
        "1152921504606846976.0",
        "123456789012345678.5",
        "1.7976931348623157e308",
        "inf",
        ".inf",
        ".Inf",
        ".INF",
        ".iNf",
        ".nan",
        ".NaN",
        "nan",
        "Infinity",
        ".",
        "1.2.3",
        "1-2",
        "1:20",
        "190:20:30",
        "12:30:00",
        "0.",
        "-",
        "+",
    ];
    let words = [
        "y",
        "Y",
        "yes",
        "Yes",
        "YES",
        "yEs",
        "n",
        "N",
        "no",
        "No",
        "NO",
        "nO",
        "true",
        "True",
        "TRUE",
        "tRue",
        "false",
        "False",
        "FALSE",
        "on",
        "On",
        "ON",
        "oN",
        "off",
        "Off",
        "OFF",
        "null",
        "Null",
        "NULL",
        "nULL",
        "~",
        "",
        "<<",
        "2001-12-14",
        "2001-12-14T21:59:43.10-05:00",
        "2001-12-14t21:59:43.10-05:00",
        "2001-12-14 21:59:43.10",
        "2001-1-2",
        "2001-12-14T25:00:00Z",
        "1999-13-40",
        "=",
        "x1",
        "0xABCDEFabcdef",
    ];
    let mut out = Vec::new();
    for body in bodies {
        for sign in ["", "+", "-"] {
            out.push(format!("{sign}{body}"));
        }
    }
    out.extend(words.iter().map(|w| (*w).to_owned()));
    out
}

/// Each spelling plain, quoted and tagged.
fn variants(spelling: &str, typed: bool) -> Vec<String> {
    let mut out = vec![
        spelling.to_owned(),
        format!("'{spelling}'"),
        format!("\"{spelling}\""),
        format!("!!str {spelling}"),
        format!("!foo {spelling}"),
    ];
    // Typed tags mostly make the file an error (checked one by one): a sample of them.
    if typed {
        for tag in ["!!int", "!!float", "!!bool", "!!null", "!!timestamp"] {
            out.push(format!("{tag} {spelling}"));
        }
    }
    out
}

/// A ConfigMap whose unknown field `extra` holds the given lines.
fn document(lines: &[String]) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: yaml-probe\n  namespace: default\nextra:\n",
    );
    for line in lines {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[test]
fn cluster_yaml_generated_scalars_read_as_kubectl_does() {
    let cluster = TestCluster::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    // Value lines and key lines (keys plain or quoted; each key alone in its own mapping).
    let mut lines = Vec::new();
    for (i, spelling) in spellings().iter().enumerate() {
        let typed = i % 3 == 0 || !spelling.starts_with(|c: char| c.is_ascii_digit() || c == '+');
        for (j, variant) in variants(spelling, typed).iter().enumerate() {
            lines.push(format!("v{i}_{j}: {variant}"));
        }
        for (j, key) in [spelling.clone(), format!("'{spelling}'")]
            .iter()
            .enumerate()
        {
            if !spelling.is_empty() && spelling != "<<" {
                lines.push(format!("k{i}_{j}: {{{key}: x}}"));
            }
        }
        // Flow context (not `-`: yaml-rust2 refuses a plain `-` before `,` or `}` that libyaml
        // reads as the string "-"; see the module documentation), and a block sequence item.
        if spelling != "-" {
            lines.push(format!("f{i}: [{spelling}, {{a: {spelling}}}]"));
        }
        lines.push(format!("s{i}:\n  - {spelling}"));
    }
    // Lines DriftGuard refuses each go to kubectl alone (kubectl must refuse them too); the rest
    // go in a few large files.
    let mut alone = Vec::new();
    let mut together = Vec::new();
    for line in lines {
        if driftguard_objects(&document(std::slice::from_ref(&line))).is_ok() {
            together.push(line);
        } else {
            alone.push(line);
        }
    }
    let mut files = Vec::new();
    for (n, chunk) in together.chunks(400).enumerate() {
        files.push((dir.path().join(format!("batch-{n}.yaml")), document(chunk)));
    }
    for (n, line) in alone.iter().enumerate() {
        files.push((
            dir.path().join(format!("alone-{n}.yaml")),
            document(std::slice::from_ref(line)),
        ));
    }
    for (path, text) in &files {
        std::fs::write(path, text).expect("write probe");
    }
    let count = files.len();
    let problems = compare_all(&cluster, files);
    eprintln!(
        "{} scalar lines read together, {} refused (each checked alone)",
        together.len(),
        alone.len()
    );
    assert!(
        problems.is_empty(),
        "{} of {count} generated files read differently:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Duplicate keys: kubectl keeps the last value; so does DriftGuard (with a warning).
#[test]
fn cluster_yaml_duplicate_keys_keep_the_last_value() {
    let cluster = TestCluster::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n  namespace: default\n\
                data:\n  a: x\n  a: y\nextra:\n  m: {q: 1}\n  m: {r: 2}\n  1: one\n  0x1: hex\n";
    let path = dir.path().join("dup.yaml");
    std::fs::write(&path, text).expect("write");
    assert_eq!(compare_file(&cluster, &path, text), None);
    let objects = parse_objects(text, &Limits::default()).expect("read");
    let mut found: Vec<String> = objects[0]
        .duplicates
        .iter()
        .map(|d| format!("{}@{}", d.path, d.line))
        .collect();
    found.sort();
    assert_eq!(found, vec!["data.a@8", "extra.1@13", "extra.m@11"]);
}
