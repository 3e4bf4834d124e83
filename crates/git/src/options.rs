//! How a tree is read: which files, which limits, which namespace default, which hasher.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use driftguard_config::GitConfig;
use driftguard_core::SecretHasher;

use crate::error::Result;
use crate::helm::HelmOptions;
use crate::kustomize::Kustomize;
use crate::manifest::Limits;
use crate::namespacing::ScopeLookup;
use crate::sandbox::Sandbox;
use crate::select::Selection;

/// Everything needed to turn a tree of files into desired objects.
#[derive(Clone)]
pub struct ReadOptions {
    /// Namespace given to namespaced objects that have none (`kubernetes.default_namespace`).
    pub default_namespace: String,
    /// Digests Secret values before anything else sees the object.
    pub hasher: SecretHasher,
    /// Scope answers from API discovery (optional; the built-in table is used otherwise).
    pub scope: Option<Arc<dyn ScopeLookup>>,
    /// Parser limits (`git.max_depth`).
    pub limits: Limits,
    /// Files larger than this are reported and skipped (`git.max_file_size`).
    pub max_file_size: u64,
    /// Which files and directories are read.
    pub selection: Selection,
    /// How Kustomize directories are rendered.
    pub kustomize: Kustomize,
    /// Which Helm releases are rendered, and how (`helm.*`).
    pub helm: HelmOptions,
    /// Limits of the renderer's sandbox.
    pub sandbox: Sandbox,
    /// What one snapshot may cost (`git.max_files`, …); over budget, the snapshot fails as a
    /// whole and the previous one stays in force.
    pub budgets: Budgets,
}

/// The budgets of one snapshot build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Most files listed (`git.max_files`).
    pub max_files: u64,
    /// Most bytes read and written out for rendering (`git.max_total_bytes`).
    pub max_total_bytes: u64,
    /// Most tree entries visited (`git.max_tree_entries`).
    pub max_tree_entries: u64,
    /// Deadline of one build (`git.snapshot_timeout`).
    pub snapshot_timeout: Duration,
}

impl Budgets {
    /// The budgets of the `git.*` configuration.
    pub fn from_config(cfg: &GitConfig) -> Self {
        Self {
            max_files: cfg.max_files,
            max_total_bytes: cfg.max_total_bytes,
            max_tree_entries: cfg.max_tree_entries,
            snapshot_timeout: cfg.snapshot_timeout,
        }
    }
}

impl Default for Budgets {
    fn default() -> Self {
        Self::from_config(&GitConfig::default())
    }
}

// === impl ReadOptions ===

impl ReadOptions {
    /// Options from the `git.*` configuration.
    pub fn from_config(
        cfg: &GitConfig,
        default_namespace: impl Into<String>,
        hasher: SecretHasher,
    ) -> Result<Self> {
        let default_namespace = default_namespace.into();
        Ok(Self {
            default_namespace: if default_namespace.is_empty() {
                "default".to_owned()
            } else {
                default_namespace
            },
            hasher,
            scope: None,
            limits: Limits {
                max_depth: cfg.max_depth.max(1),
                ..Limits::default()
            },
            max_file_size: cfg.max_file_size,
            selection: Selection::new(&cfg.path, &cfg.include, &cfg.exclude)?,
            kustomize: Kustomize::Auto,
            helm: HelmOptions::default(),
            sandbox: Sandbox::default(),
            budgets: Budgets::from_config(cfg),
        })
    }

    /// Options from the whole configuration: `git.*`, `kubernetes.default_namespace` and
    /// `helm.*` — what `serve` and `check` both read a repository with.
    pub fn for_config(config: &driftguard_config::Config, hasher: SecretHasher) -> Result<Self> {
        Ok(
            Self::from_config(&config.git, &config.kubernetes.default_namespace, hasher)?
                .with_helm(HelmOptions::from_config(&config.helm)),
        )
    }

    /// Sets how Helm charts are rendered (`helm.*`).
    pub fn with_helm(mut self, helm: HelmOptions) -> Self {
        self.helm = helm;
        self
    }

    /// Adds a scope lookup (API discovery).
    pub fn with_scope_lookup(mut self, scope: Arc<dyn ScopeLookup>) -> Self {
        self.scope = Some(scope);
        self
    }
}

impl fmt::Debug for ReadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadOptions")
            .field("default_namespace", &self.default_namespace)
            .field("limits", &self.limits)
            .field("max_file_size", &self.max_file_size)
            .field("selection", &self.selection)
            .field("kustomize", &self.kustomize)
            .field("helm", &self.helm)
            .field("sandbox", &self.sandbox)
            .field("budgets", &self.budgets)
            .field("scope", &self.scope.is_some())
            .finish_non_exhaustive()
    }
}
