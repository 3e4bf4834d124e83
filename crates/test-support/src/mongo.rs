//! The MongoDB-wire test peer started by `scripts/mongo-peer.sh` (SecantusDB, a stand-in for
//! `mongod` that no reachable registry ships).
//!
//! Tests share one server and each takes its own database
//! ([`TestMongo::fresh_database_name`]). Tests that stop the server use a [`PrivateMongo`].

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::process::{path_str, run_script};

/// The message of every failure caused by a missing `DRIFTGUARD_TEST_MONGODB_URI`.
pub const NOT_RUNNING: &str = "the local MongoDB peer is not running: run \
    `scripts/mongo-peer.sh up` and export DRIFTGUARD_TEST_MONGODB_URI (or run scripts/test.sh)";

/// A MongoDB-wire server reachable at a URI.
#[derive(Debug, Clone)]
pub struct TestMongo {
    uri: String,
}

/// A server of its own in a temporary state directory, for outage tests: [`PrivateMongo::stop`]
/// and [`PrivateMongo::resume`] keep its data and port. Stopped and removed on drop.
#[derive(Debug)]
pub struct PrivateMongo {
    state: tempfile::TempDir,
    mongo: TestMongo,
}

// === impl TestMongo ===

impl TestMongo {
    /// The shared server named by `DRIFTGUARD_TEST_MONGODB_URI`.
    ///
    /// # Panics
    ///
    /// When the variable is unset, with [`NOT_RUNNING`]: tests are never silently skipped.
    pub fn shared() -> TestMongo {
        match TestMongo::try_shared() {
            Ok(mongo) => mongo,
            Err(error) => panic!("{error:#}"),
        }
    }

    /// Like [`TestMongo::shared`], returning the problem instead of panicking.
    pub fn try_shared() -> Result<TestMongo> {
        match std::env::var("DRIFTGUARD_TEST_MONGODB_URI") {
            Ok(uri) if !uri.trim().is_empty() => Ok(TestMongo::from_uri(uri.trim())),
            _ => bail!("{NOT_RUNNING}"),
        }
    }

    /// A server at `uri` (`mongodb://127.0.0.1:PORT`).
    pub fn from_uri(uri: impl Into<String>) -> TestMongo {
        TestMongo { uri: uri.into() }
    }

    /// The connection string, without a database name.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// A database name no other test uses (`dgtest_` plus a random suffix).
    pub fn fresh_database_name(&self) -> String {
        fresh_database_name()
    }

    /// A connected client of the official driver.
    pub async fn client(&self) -> Result<mongodb::Client> {
        mongodb::Client::with_uri_str(&self.uri)
            .await
            .with_context(|| format!("could not create a MongoDB client for {}", self.uri))
    }
}

/// A database name no other test uses (`dgtest_` plus a random suffix).
pub fn fresh_database_name() -> String {
    format!("dgtest_{}", uuid::Uuid::new_v4().simple())
}

// === impl PrivateMongo ===

impl PrivateMongo {
    /// Starts a private server: `scripts/mongo-peer.sh up --state-dir <temp dir>`.
    pub fn start() -> Result<PrivateMongo> {
        let state = tempfile::Builder::new()
            .prefix("driftguard-mongo-")
            .tempdir()
            .context("could not create a state directory for a private MongoDB peer")?;
        let out = run_script(
            "mongo-peer.sh",
            &["up", "--state-dir", path_str(state.path())?],
        )
        .context("could not start a private MongoDB peer")?;
        let uri = parse_export(&out)?;
        Ok(PrivateMongo {
            state,
            mongo: TestMongo::from_uri(uri),
        })
    }

    /// The server as a [`TestMongo`].
    pub fn mongo(&self) -> &TestMongo {
        &self.mongo
    }

    /// The connection string.
    pub fn uri(&self) -> &str {
        self.mongo.uri()
    }

    /// The state directory (data, log, port).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Stops the server; data and port are kept for [`PrivateMongo::resume`].
    pub fn stop(&self) -> Result<()> {
        run_script("mongo-peer.sh", &["down", "--state-dir", self.dir()?])
            .context("could not stop the private MongoDB peer")?;
        Ok(())
    }

    /// Starts the stopped server again, on the same port with the same data, and waits until
    /// it answers.
    pub fn resume(&self) -> Result<()> {
        let out = run_script("mongo-peer.sh", &["up", "--state-dir", self.dir()?])
            .context("could not restart the private MongoDB peer")?;
        let uri = parse_export(&out)?;
        if uri != self.mongo.uri {
            bail!(
                "the private MongoDB peer came back at {uri} instead of {} (its port was taken)",
                self.mongo.uri
            );
        }
        Ok(())
    }

    fn dir(&self) -> Result<&str> {
        path_str(self.state.path())
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        if let Ok(dir) = self.dir()
            && let Err(error) = run_script("mongo-peer.sh", &["down", "--state-dir", dir])
        {
            eprintln!("stopping a private MongoDB peer failed: {error:#}");
        }
    }
}

fn parse_export(out: &str) -> Result<String> {
    out.lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("export DRIFTGUARD_TEST_MONGODB_URI=")
        })
        .map(str::to_owned)
        .with_context(|| format!("scripts/mongo-peer.sh printed no URI:\n{out}"))
}
