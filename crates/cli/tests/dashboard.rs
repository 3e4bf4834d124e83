//! The dashboard in a real browser (issue 18): headless Chromium (Debian's `chromium` and
//! `chromium-driver`, through WebDriver) against a real `serve` on the real control plane
//! (`DRIFTGUARD_TEST_KUBECONFIG`) with a token.
//!
//! Login through the form (cookie flags checked), the overview's counts, a `kubectl scale`
//! appearing on the open drift list without a reload, the resource page's `spec.replicas`
//! 2 → 3 with its severity and a link to the line of `replicas:` in Git, re-applying Git moving it to resolved with the episode on the
//! timeline, a filter, and accessibility: our markup checks (labels, table headers, one `h1`)
//! and axe-core (vendored in `testdata/axe-core`) with no serious or critical violation. Screenshots go to
//! `DRIFTGUARD_SCREENSHOTS` when set (the README's come from there).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driftguard_test_support::browser::Browser;
use driftguard_test_support::cluster::TestCluster;
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::serve::ServeProcess;
use serde_json::{Value, json};

const TOKEN: &str = "dashboard-test-token";
const WAIT: Duration = Duration::from_secs(30);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

fn deployment(ns: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {ns}\ndata:\n  mode: fast\n"
    )
}

fn screenshot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("DRIFTGUARD_SCREENSHOTS") {
        browser.screenshot(&PathBuf::from(dir).join(name)).unwrap();
    }
}

/// Markup a keyboard or screen-reader user needs: one `h1`, headings in order, every form
/// control labelled, every table with header cells, every link and button named.
const MARKUP_CHECK: &str = r##"
const problems = [];
if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
let last = 0;
for (const h of document.querySelectorAll("h1,h2,h3,h4")) {
  const level = Number(h.tagName[1]);
  if (level > last + 1) problems.push(`heading ${h.tagName} after h${last}: ${h.textContent}`);
  last = level;
}
for (const c of document.querySelectorAll("input,select,textarea")) {
  if (!(c.labels && c.labels.length) && !c.getAttribute("aria-label")) problems.push(`unlabelled ${c.name || c.id}`);
}
for (const t of document.querySelectorAll("table")) {
  if (!t.querySelector("th")) problems.push("table without header cells");
}
for (const a of document.querySelectorAll("a,button")) {
  if (!a.textContent.trim() && !a.getAttribute("aria-label")) problems.push(`unnamed ${a.tagName}`);
}
if (!document.documentElement.lang) problems.push("no lang");
return problems;
"##;

fn markup_ok(browser: &Browser, page: &str) {
    let problems = browser.eval(MARKUP_CHECK, &[]).unwrap();
    assert_eq!(problems, json!([]), "{page}: {problems:#}");
    // axe-core: no serious or critical accessibility violation.
    let violations = browser.accessibility_violations().unwrap();
    assert_eq!(
        violations,
        json!([]),
        "{page}: axe-core found {violations:#}"
    );
}

#[test]
fn cluster_dashboard_login_live_drift_resource_page_and_resolution() {
    let ns = TestCluster::shared().namespace("dashboard").unwrap();
    let yaml = deployment(ns.name());
    ns.apply_yaml(&yaml).unwrap();
    let repo = TestRepo::with_files(&[("app.yaml", &yaml)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "database:\n  driver: sqlite\n  path: {db}\nkubernetes:\n  config_path: {kc}\n  namespaces: [{ns}]\n  resources: [deployments, configmaps]\ngit:\n  repository_url: \"{url}\"\n  default_branch: main\n  poll_interval: 1s\n  workdir: {wd}\n",
        db = dir.path().join("dg.db").display(),
        kc = ns.kubeconfig().display(),
        ns = ns.name(),
        url = repo.url(),
        wd = dir.path().join("git").display(),
    );
    let mut serve = ServeProcess::start(
        binary(),
        &config,
        &[("DRIFTGUARD_SERVER__AUTH_TOKEN", TOKEN)],
    )
    .unwrap();
    let id = format!("Deployment:{}:web", ns.name());
    serve
        .wait_for(WAIT, |p| Ok(p.get("/ready")?.0 == 200))
        .unwrap();
    let browser = Browser::start().unwrap();
    let base = serve.base_url();

    // Without the session the page is the login form.
    browser.goto(&format!("{base}/")).unwrap();
    assert!(
        browser.url().unwrap().ends_with("/ui/login"),
        "{}",
        browser.url().unwrap()
    );
    markup_ok(&browser, "login");
    browser.fill("#token", "wrong").unwrap();
    browser.click("button[type=submit]").unwrap();
    assert!(browser.url().unwrap().ends_with("/ui/login"));
    browser
        .wait_for(WAIT, "return document.readyState === 'complete' && document.querySelector('#token') && document.querySelector('#token').value === ''")
        .unwrap();
    browser.fill("#token", TOKEN).unwrap();
    browser.click("button[type=submit]").unwrap();
    // The click returns before the form's answer arrives; the cookie exists once the browser has
    // followed the redirect away from the login page.
    browser
        .wait_for(
            WAIT,
            "return !location.pathname.endsWith('/ui/login') && document.readyState !== 'loading'",
        )
        .unwrap();
    let cookies = browser.cookies().unwrap();
    let session = cookies
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "driftguard_session")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:#}"))
        .clone();
    assert_eq!(session["httpOnly"], true, "{session:#}");
    assert_eq!(session["sameSite"], "Strict", "{session:#}");
    assert!(!session["value"].as_str().unwrap().contains(TOKEN));
    assert!(!browser.url().unwrap().contains(TOKEN));

    // The overview with the right counts (the two resources are in sync).
    let started = Instant::now();
    browser
        .wait_for(WAIT, r##"return document.querySelector(".cards") && document.querySelector("#live").textContent.startsWith("live")"##)
        .unwrap();
    eprintln!("overview rendered {:?} after the login", started.elapsed());
    let stats = serve_stats(&serve);
    let cards: Value = browser
        .eval(
            r##"return [...document.querySelectorAll(".card")].map(c => c.textContent)"##,
            &[],
        )
        .unwrap();
    let cards: Vec<String> = serde_json::from_value(cards).unwrap();
    assert!(
        cards.contains(&format!("{}in sync", stats["no_drift"])),
        "{cards:?} vs {stats}"
    );
    assert!(
        cards.contains(&format!("{}active drift", stats["active_drift"])),
        "{cards:?}"
    );
    markup_ok(&browser, "overview");

    // The drift list is open when someone scales the Deployment: the row appears live.
    browser.goto(&format!("{base}/#/drift")).unwrap();
    browser
        .wait_for(WAIT, r##"return document.querySelector("#live").textContent.startsWith("live") && document.querySelector("form.filters")"##)
        .unwrap();
    markup_ok(&browser, "drift list");
    // The script telling whether the Deployment's row is on the page.
    let row_shown = format!(r##"return !!document.querySelector('tr[data-id="{id}"]')"##);
    assert_eq!(browser.eval(&row_shown, &[]).unwrap(), false);
    let navigations: Value = browser
        .eval(
            "return performance.getEntriesByType('navigation').length",
            &[],
        )
        .unwrap();
    let scaled = Instant::now();
    ns.scale("deployment/web", 3).unwrap();
    browser.wait_for(WAIT, &row_shown).unwrap();
    eprintln!(
        "kubectl scale → row on the open page after {:?}",
        scaled.elapsed()
    );
    assert_eq!(
        browser
            .eval(
                "return performance.getEntriesByType('navigation').length",
                &[]
            )
            .unwrap(),
        navigations,
        "the page reloaded"
    );

    // A filter that excludes it, then one that keeps it.
    browser
        .goto(&format!("{base}/#/drift?kind=ConfigMap"))
        .unwrap();
    browser
        .wait_for(WAIT, r##"const kind = document.querySelector("#f-kind"); return kind && kind.value === "ConfigMap" && document.querySelector("caption")"##)
        .unwrap();
    assert_eq!(
        browser.eval(&row_shown, &[]).unwrap(),
        false,
        "kind=ConfigMap still lists the Deployment"
    );
    browser
        .goto(&format!("{base}/#/drift?kind=Deployment&q=we"))
        .unwrap();
    browser.wait_for(WAIT, &row_shown).unwrap();

    // The resource page: spec.replicas 2 → 3 with its severity.
    let record = serve_record(&serve, &id);
    browser
        .goto(&format!("{base}/#/resource/{}", id.replace(':', "%3A")))
        .unwrap();
    let row: Value = browser
        .wait_for(WAIT, &format!(r##"if (document.querySelector("#view h2").textContent !== "{id}") return null; const row = [...document.querySelectorAll("tbody tr")].find(r => r.cells[0].textContent === "spec.replicas"); return row && [...row.cells].map(c => c.textContent)"##))
        .unwrap();
    let cells: Vec<String> = serde_json::from_value(row).unwrap();
    assert_eq!(cells[0], "spec.replicas", "{cells:?}");
    assert_eq!(cells[1], "2", "{cells:?}");
    assert_eq!(cells[2], "3", "{cells:?}");
    assert_eq!(cells[3], "Scaling", "{cells:?}");
    assert_eq!(cells[4], record["severity"].as_str().unwrap(), "{cells:?}");
    // Where the desired value lives: the file and the line of `replicas:` in it (line 7 of
    // `deployment()`), not the document's first line.
    assert_eq!(cells[7], "app.yaml:7", "{cells:?}");
    assert_eq!(record["source_line"], 1, "{record:#}");
    let replicas = record["drift_details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "spec.replicas")
        .unwrap();
    assert_eq!(replicas["source_line"], 7, "{record:#}");
    // With the repository's web address known (served in a meta tag; this test's repository
    // is local, so it is set here), the place is a link to the file at the commit and line.
    let href = browser
        .eval(
            r##"document.querySelector('meta[name="driftguard-source"]').content = "https://git.example.com/org/repo";
                window.dispatchEvent(new HashChangeEvent("hashchange"));
                return null;"##,
            &[],
        )
        .and_then(|_| {
            browser.wait_for(
                WAIT,
                r##"const row = [...document.querySelectorAll("tbody tr")].find(r => r.cells[0].textContent === "spec.replicas"); const a = row && row.querySelector("td:last-child a"); return a && a.href"##,
            )
        })
        .unwrap();
    assert_eq!(
        href,
        format!(
            "https://git.example.com/org/repo/blob/{}/app.yaml#L7",
            record["git_commit"].as_str().unwrap()
        )
    );
    markup_ok(&browser, "resource");
    screenshot(&browser, "resource.png");

    // The overview now counts the drift (and shows it on the timeline).
    browser.goto(&format!("{base}/#/")).unwrap();
    browser
        .wait_for(WAIT, r##"return [...document.querySelectorAll(".card")].some(c => c.textContent === "1active drift") && document.querySelector("tbody tr[data-id]")"##)
        .unwrap();
    screenshot(&browser, "overview.png");
    browser
        .goto(&format!("{base}/#/resource/{}", id.replace(':', "%3A")))
        .unwrap();
    browser
        .wait_for(WAIT, r##"return document.querySelector("#live").textContent.startsWith("live") && document.querySelector("ol.timeline")"##)
        .unwrap();

    // Git re-applied: the open resource page shows it resolved, with the episode.
    ns.apply_yaml(&yaml).unwrap();
    let text = browser
        .wait_for(WAIT, r##"const t = document.querySelector("#view").innerText; return t.includes("resolved") && document.querySelector("ol.timeline li") && t"##)
        .unwrap();
    let text = text.as_str().unwrap();
    assert!(text.contains("resolved"), "{text}");
    let episode: Value = browser
        .eval(
            r##"return document.querySelector("ol.timeline li").textContent"##,
            &[],
        )
        .unwrap();
    assert!(
        episode.as_str().unwrap().contains("spec.replicas"),
        "{episode}"
    );
    assert!(!serve.log().contains("panicked"));
}

fn serve_stats(serve: &ServeProcess) -> Value {
    let (status, body) = serve_get(serve, "/api/v1/statistics");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["statistics"].clone()
}

fn serve_record(serve: &ServeProcess, id: &str) -> Value {
    let (status, body) = serve_get(serve, &format!("/api/v1/drift-records/{id}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn serve_get(serve: &ServeProcess, path: &str) -> (u16, String) {
    driftguard_test_support::serve::http(
        "GET",
        serve.port(),
        path,
        None,
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    )
    .unwrap()
}
