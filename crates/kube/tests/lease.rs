//! Leader election against the real control plane (issue 19): one Lease per test in its own
//! namespace, several electors in one process (each its own candidate).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use driftguard_kube::lease::{Elector, LeaseSettings, Role};
use support::{TestNamespace, client, kubeconfig};

fn settings(ns: &str, identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: "dg-lease".to_owned(),
        namespace: ns.to_owned(),
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
    }
}

/// Waits until `pick` finds the one leader among `electors`; panics after `timeout` or when
/// two lead at once.
async fn one_leader(electors: &[(&str, &Elector)], timeout: Duration) -> (String, u64) {
    let deadline = Instant::now() + timeout;
    loop {
        let leading: Vec<(String, u64)> = electors
            .iter()
            .filter_map(|(name, e)| match &*e.role().borrow() {
                Role::Leading { term } if e.gate().is_leading() => {
                    Some(((*name).to_owned(), *term))
                }
                _ => None,
            })
            .collect();
        assert!(leading.len() <= 1, "two leaders: {leading:?}");
        if let Some(one) = leading.into_iter().next() {
            return one;
        }
        assert!(Instant::now() < deadline, "no leader within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lease_json(ns: &TestNamespace) -> serde_json::Value {
    serde_json::from_str(&ns.kubectl(&["get", "lease", "dg-lease", "-o", "json"])).unwrap()
}

#[tokio::test]
async fn cluster_lease_one_leader_release_hands_over_and_the_term_counts_transitions() {
    let kc = kubeconfig();
    let ns = TestNamespace::create(&kc, "lease");
    let a = Elector::start(client(&kc).await, settings(&ns.name, "a"));
    let b = Elector::start(client(&kc).await, settings(&ns.name, "b"));
    let (first, first_term) = one_leader(&[("a", &a), ("b", &b)], Duration::from_secs(20)).await;
    let lease = lease_json(&ns);
    assert_eq!(lease["spec"]["holderIdentity"], first.as_str(), "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 3);
    assert_eq!(lease["spec"]["leaseTransitions"], first_term);
    // The leader renews: renewTime moves, the holder and term stay.
    let renewed_before = lease["spec"]["renewTime"].clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lease = lease_json(&ns);
    assert_ne!(
        lease["spec"]["renewTime"], renewed_before,
        "the leader renews"
    );
    assert_eq!(lease["spec"]["holderIdentity"], first.as_str());

    // The follower sees who holds it.
    let (leader, follower) = if first == "a" { (a, b) } else { (b, a) };
    let follower_name = if first == "a" { "b" } else { "a" };
    assert_eq!(
        *follower.role().borrow(),
        Role::Following {
            holder: Some(first.clone())
        }
    );

    // Release: the follower takes over well before the Lease could have lapsed.
    let released = Instant::now();
    leader.release(Duration::from_secs(5)).await;
    let (second, second_term) =
        one_leader(&[(follower_name, &follower)], Duration::from_secs(10)).await;
    let took = released.elapsed();
    assert_eq!(second, follower_name);
    assert!(
        took < Duration::from_secs(2),
        "hand-over after release took {took:?} (the Lease lasts 3 s)"
    );
    assert_eq!(second_term, first_term + 1, "a new holder is a new term");
    let lease = lease_json(&ns);
    assert_eq!(lease["spec"]["holderIdentity"], follower_name);
    assert_eq!(lease["spec"]["leaseTransitions"], second_term);
    follower.release(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn cluster_lease_a_silent_holder_is_replaced_only_after_the_lease_duration() {
    let kc = kubeconfig();
    let ns = TestNamespace::create(&kc, "lease-lapse");
    // A holder that stopped renewing: written by hand, as a crashed process leaves it.
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    ns.apply(&format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: dg-lease\nspec:\n  holderIdentity: gone\n  leaseDurationSeconds: 3\n  leaseTransitions: 7\n  acquireTime: \"{now}\"\n  renewTime: \"{now}\"\n"
    ));
    let started = Instant::now();
    let c = Elector::start(client(&kc).await, settings(&ns.name, "c"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        *c.role().borrow(),
        Role::Following {
            holder: Some("gone".to_owned())
        },
        "the Lease is still held"
    );
    let (name, term) = one_leader(&[("c", &c)], Duration::from_secs(10)).await;
    let waited = started.elapsed();
    assert_eq!(name, "c");
    assert_eq!(
        term, 8,
        "the transition count goes on from the old holder's"
    );
    assert!(
        waited >= Duration::from_secs(3),
        "took over after {waited:?}, before the 3 s Lease lapsed"
    );
    c.release(Duration::from_secs(5)).await;
}
