//! A real headless browser for dashboard tests: Debian's `chromium` driven through
//! `chromedriver` (Debian's `chromium-driver`) over the W3C WebDriver protocol.
//!
//! [`Browser::start`] starts a private chromedriver on a free loopback port and opens one
//! headless session with a throw-away profile; both are stopped on drop (the driver by PID).
//! The binaries are found through `DRIFTGUARD_TEST_CHROMEDRIVER` / `DRIFTGUARD_TEST_CHROMIUM`,
//! else `/usr/bin/chromedriver` and `/usr/bin/chromium` (`scripts/test.sh` installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::{Value, json};

use crate::process::{path_str, spawn_listening};
use crate::receiver::request;

/// What to install when a binary is missing.
pub const NOT_INSTALLED: &str =
    "Chromium is not installed: apt-get install chromium chromium-driver (scripts/test.sh does)";

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

fn binary(env: &str, default: &str) -> Result<PathBuf> {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if path.is_file() {
        Ok(path)
    } else {
        bail!("{} not found ({env}); {NOT_INSTALLED}", path.display())
    }
}

impl Browser {
    /// Starts chromedriver and a headless session (window 1280×900).
    pub fn start() -> Result<Browser> {
        let driver_bin = binary("DRIFTGUARD_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")?;
        let chromium = binary("DRIFTGUARD_TEST_CHROMIUM", "/usr/bin/chromium")?;
        let profile = tempfile::Builder::new()
            .prefix("driftguard-chromium-")
            .tempdir()
            .context("could not create a browser profile directory")?;
        let log = profile.path().join("chromedriver.log");
        let (driver, port) = spawn_listening("chromedriver", &log, |port| {
            let mut command = Command::new(&driver_bin);
            command.arg(format!("--port={port}"));
            command
        })?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let user_data = browser._profile.path().join("profile");
        let answer = browser.call(
            "POST",
            "/session",
            Some(&json!({
                "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": path_str(&chromium)?,
                        "args": [
                            "--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--no-first-run",
                            "--window-size=1280,900",
                            format!("--user-data-dir={}", path_str(&user_data)?),
                        ]
                    }
                }}
            })),
        )?;
        browser.session = answer["sessionId"]
            .as_str()
            .with_context(|| format!("no session id from chromedriver: {answer}"))?
            .to_owned();
        Ok(browser)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let payload = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let response = request(
            method,
            &url,
            &[("content-type", "application/json; charset=utf-8")],
            &payload,
            CALL_TIMEOUT,
        )?;
        let answer: Value = serde_json::from_slice(&response.body)
            .with_context(|| format!("{method} {path}: not JSON"))?;
        if !(200..300).contains(&response.status) {
            bail!("{method} {path} answered {}: {answer}", response.status);
        }
        Ok(answer["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(&json!({ "url": url })),
        )?;
        Ok(())
    }

    /// The current URL.
    pub fn url(&self) -> Result<String> {
        Ok(self
            .call("GET", &self.session_path("/url"), None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn eval(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` asynchronously: it calls `arguments[arguments.length - 1]` with its result.
    pub fn eval_async(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/async"),
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs axe-core (vendored in `testdata/axe-core`) on the page and returns its violations
    /// of impact `serious` or `critical` as `{id, impact, help, nodes: [target…]}`.
    pub fn accessibility_violations(&self) -> Result<Value> {
        let axe = std::fs::read_to_string(crate::repo_root().join("testdata/axe-core/axe.min.js"))
            .context("testdata/axe-core/axe.min.js is missing")?;
        self.eval(&format!("{axe}\nreturn typeof axe;"), &[])?;
        self.eval_async(
            r"const done = arguments[arguments.length - 1];
              axe.run(document, { resultTypes: ['violations'] })
                .then(r => done(r.violations
                  .filter(v => v.impact === 'serious' || v.impact === 'critical')
                  .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                               nodes: v.nodes.map(n => n.target.join(' ')) }))))
                .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
            &[],
        )
    }

    /// Polls `script` until it returns a truthy value (returned), or fails after `timeout`.
    pub fn wait_for(&self, timeout: Duration, script: &str) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(script, &[])?;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            if truthy {
                return Ok(value);
            }
            if Instant::now() > deadline {
                let text = self.eval("return document.body ? document.body.innerText : ''", &[])?;
                bail!("not true within {timeout:?}: {script}\npage text: {text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `text` into the element matching `css` (found again while a navigation replaces
    /// the page, for up to 10 s).
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        self.on_element(css, "value", &json!({ "text": text }))
    }

    /// Clicks the element matching `css` (found again like [`Browser::fill`]).
    pub fn click(&self, css: &str) -> Result<()> {
        self.on_element(css, "click", &json!({}))
    }

    fn on_element(&self, css: &str, action: &str, body: &Value) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let attempt = self.element(css).and_then(|id| {
                self.call(
                    "POST",
                    &self.session_path(&format!("/element/{id}/{action}")),
                    Some(body),
                )
            });
            match attempt {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    let text = format!("{e:#}");
                    if !(text.contains("stale element") || text.contains("no such element")) {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn element(&self, css: &str) -> Result<String> {
        let found = self.call(
            "POST",
            &self.session_path("/element"),
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("no element {css}"))
    }

    /// Every cookie of the current page, as WebDriver describes them (`name`, `value`,
    /// `httpOnly`, `sameSite`, …).
    pub fn cookies(&self) -> Result<Value> {
        self.call("GET", &self.session_path("/cookie"), None)
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let data = self.call("GET", &self.session_path("/screenshot"), None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .context("the screenshot is not base64")?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, png).with_context(|| format!("could not write {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.session_path(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
