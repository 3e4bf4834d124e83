//! The Kubernetes client, from `kubernetes.config_path` and `kubernetes.context`.
//!
//! Order: the file in `config_path` (with `context` resolved in that file); else, with a
//! `context`, `KUBECONFIG` or `~/.kube/config`; else kube-rs' inference (`KUBECONFIG`, the default
//! kubeconfig, then the in-cluster service account).

use driftguard_config::KubernetesConfig;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result};

/// Builds the client configuration without connecting (tests adjust it, e.g. to impersonate).
pub async fn client_config(cfg: &KubernetesConfig) -> Result<kube::Config> {
    let context = (!cfg.context.is_empty()).then(|| cfg.context.clone());
    let options = KubeConfigOptions {
        context: context.clone(),
        ..KubeConfigOptions::default()
    };
    if !cfg.config_path.is_empty() {
        let kubeconfig =
            Kubeconfig::read_from(&cfg.config_path).map_err(|source| Error::Kubeconfig {
                path: cfg.config_path.clone(),
                context: context.clone(),
                source,
            })?;
        return kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|source| Error::Kubeconfig {
                path: cfg.config_path.clone(),
                context,
                source,
            });
    }
    if context.is_some() {
        return kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|source| Error::Kubeconfig {
                path: std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".to_owned()),
                context,
                source,
            });
    }
    kube::Config::infer().await.map_err(Error::Infer)
}

/// Builds a client from the configuration (no request is made yet), speaking HTTP/1.1.
pub async fn connect(cfg: &KubernetesConfig) -> Result<kube::Client> {
    connect_with(cfg, Protocols::Http1).await
}

/// [`connect`] with the HTTP versions to offer.
pub async fn connect_with(cfg: &KubernetesConfig, protocols: Protocols) -> Result<kube::Client> {
    let config = client_config(cfg).await?;
    client_with(config, protocols)
}

/// The HTTP versions a client offers the API server (by ALPN, in the TLS handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 only: one connection per request in flight. `serve` holds one connection per
    /// watch, so a stalled stream (a frozen API server, a dropped connection) fails alone and
    /// its read timeout is its own.
    Http1,
    /// HTTP/2 when the server offers it, else HTTP/1.1: every request in flight shares one
    /// connection. A one-shot `check` sends a dozen at once (discovery's group versions, a list
    /// per kind); over HTTP/1.1 each opened its own connection and paid its own TLS handshake,
    /// on both sides of a machine the API server may share.
    Multiplexed,
}

/// kube-rs' own client stack (TLS, timeouts, retries of 429/503/504, base URI, credentials,
/// extra headers) on a connector that turns Nagle's algorithm off.
///
/// Every new connection's first request follows the TLS handshake's last flight as a second
/// small write; with Nagle on it waits for the server's delayed ACK (~40 ms on Linux). A
/// one-shot `check` opens a connection per concurrent list, so that wait was a third of its
/// wall time. Through a proxy (which our kube features do not support) kube-rs' own builder
/// answers, with its own error.
pub fn client_from(config: kube::Config) -> Result<kube::Client> {
    client_with(config, Protocols::Http1)
}

/// [`client_from`] offering `protocols`.
pub fn client_with(config: kube::Config, protocols: Protocols) -> Result<kube::Client> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use kube::client::ConfigExt;

    if config.proxy_url.is_some() {
        return kube::Client::try_from(config).map_err(Error::Client);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    // As kube-rs builds it (`rustls_https_connector_with_connector`), with the protocols asked.
    let mut tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config().map_err(Error::Client)?)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = name
            .clone()
            .try_into()
            .map_err(|_| Error::TlsServerName { name: name.clone() })?;
        tls = tls.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = match protocols {
        Protocols::Http1 => tls.enable_http1().wrap_connector(http),
        Protocols::Multiplexed => tls.enable_all_versions().wrap_connector(http),
    };
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer().map_err(Error::Client)?)
        .layer(config.extra_headers_layer().map_err(Error::Client)?)
        .map_err(tower::BoxError::from)
        .service(client);
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_file_names_it() {
        let cfg = KubernetesConfig {
            config_path: "/nonexistent/kubeconfig".into(),
            context: "ctx".into(),
            ..KubernetesConfig::default()
        };
        let err = client_config(&cfg).await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("cannot load kubeconfig /nonexistent/kubeconfig (context ctx)")
        );
    }

    #[tokio::test]
    async fn context_is_resolved_in_the_named_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n\
             - name: a\n  cluster: {server: 'https://127.0.0.1:1111', insecure-skip-tls-verify: true}\n\
             - name: b\n  cluster: {server: 'https://127.0.0.1:2222', insecure-skip-tls-verify: true}\n\
             users:\n- name: u\n  user: {token: t}\n\
             contexts:\n- name: a\n  context: {cluster: a, user: u, namespace: na}\n\
             - name: b\n  context: {cluster: b, user: u, namespace: nb}\n",
        )
        .unwrap();
        let mut cfg = KubernetesConfig {
            config_path: path.display().to_string(),
            ..KubernetesConfig::default()
        };
        let current = client_config(&cfg).await.unwrap();
        assert_eq!(current.cluster_url.to_string(), "https://127.0.0.1:1111/");
        cfg.context = "b".into();
        let b = client_config(&cfg).await.unwrap();
        assert_eq!(b.cluster_url.to_string(), "https://127.0.0.1:2222/");
        assert_eq!(b.default_namespace, "nb");
        cfg.context = "nope".into();
        assert!(client_config(&cfg).await.is_err());
    }
}
