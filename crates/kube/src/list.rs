//! One-shot reads: the list behind `driftguard check`, and one object in the `apiVersion` its Git
//! manifest uses (contract §1).
//!
//! Responses are fetched as text and decoded here rather than through `Api<DynamicObject>`:
//! kube-rs logs the whole response body when decoding fails, and these bodies hold Secrets.

use driftguard_core::{LiveObject, SecretHasher};
use futures::StreamExt as _;
use kube::Resource as _;
use kube::api::{DynamicObject, GetParams, ListParams};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{Error, KindError, Result};
use crate::ingest::ingest;
use crate::scope::WatchScope;
use crate::types::ResolvedKind;

/// Page size of one-shot lists.
const PAGE_SIZE: u32 = 500;

/// Kinds listed at the same time.
const CONCURRENCY: usize = 4;

/// Lists every kind once (one list per kind, per namespace when namespaces are listed) and
/// returns the redacted objects in scope plus one error per list that failed (a forbidden kind
/// does not stop the others).
pub async fn list_once(
    client: &kube::Client,
    kinds: &[ResolvedKind],
    scope: &WatchScope,
    hasher: &SecretHasher,
) -> (Vec<LiveObject>, Vec<KindError>) {
    let targets: Vec<(ResolvedKind, Option<String>)> = kinds
        .iter()
        .flat_map(|k| scope.targets(k).into_iter().map(move |t| (k.clone(), t)))
        .collect();
    let results: Vec<_> = futures::stream::iter(targets)
        .map(|(kind, namespace)| async move {
            let result = list_target(client, &kind, namespace.as_deref(), scope, hasher).await;
            (kind, namespace, result)
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;

    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (kind, namespace, result) in results {
        match result {
            Ok(mut listed) => objects.append(&mut listed),
            Err(err) => errors.push(KindError {
                kind: kind.group_kind(),
                namespace,
                forbidden: err.is_forbidden(),
                message: match err {
                    Error::Api { message, .. } => message,
                    other => crate::error::chain(&other),
                },
            }),
        }
    }
    (objects, errors)
}

async fn list_target(
    client: &kube::Client,
    kind: &ResolvedKind,
    namespace: Option<&str>,
    scope: &WatchScope,
    hasher: &SecretHasher,
) -> Result<Vec<LiveObject>> {
    let resource = kind.api_resource();
    let what = match namespace {
        Some(ns) => format!("list {} in namespace {ns}", kind.group_kind()),
        None => format!("list {}", kind.group_kind()),
    };
    let request = kube::core::Request::new(DynamicObject::url_path(&resource, namespace));
    let mut params = ListParams::default().limit(PAGE_SIZE);
    if let Some(labels) = &scope.label_selector {
        params = params.labels(labels);
    }
    if let Some(fields) = scope.field_selector(kind, namespace) {
        params = params.fields(&fields);
    }
    // Each page is read on blocking threads, a chunk per thread (decoding the items into trees,
    // then ingestion — redaction, normalisation, hashing — is most of a list's CPU), while the
    // next page is fetched.
    type Read = std::result::Result<Vec<LiveObject>, serde_json::Error>;
    let mut reading: Vec<tokio::task::JoinHandle<Read>> = Vec::new();
    for_each_page(client, &request, params, &what, |items| {
        let chunks = items.len().div_ceil(INGEST_CHUNK).max(1);
        let size = items.len().div_ceil(chunks).max(1);
        let mut items = items.into_iter();
        loop {
            let chunk: Vec<Box<RawValue>> = items.by_ref().take(size).collect();
            if chunk.is_empty() {
                break;
            }
            let (kind, scope, hasher) = (kind.clone(), scope.clone(), hasher.clone());
            reading.push(tokio::task::spawn_blocking(move || {
                let items = chunk
                    .iter()
                    .map(|item| serde_json::from_str(item.get()))
                    .collect::<std::result::Result<Vec<Value>, _>>()?;
                drop(chunk);
                Ok(ingest_in_scope(&kind, items, &scope, &hasher))
            }));
        }
    })
    .await?;
    let mut objects = Vec::new();
    for chunk in reading {
        let read = chunk.await.map_err(|e| Error::Api {
            what: what.clone(),
            code: None,
            message: format!("reading the list stopped: {e}"),
        })?;
        objects.extend(read.map_err(|source| Error::Decode {
            what: what.clone(),
            source,
        })?);
    }
    Ok(objects)
}

/// Items ingested by one thread of a list (a page of 500 Deployments is read in four).
const INGEST_CHUNK: usize = 128;

/// The redacted objects of `items` in scope.
fn ingest_in_scope(
    kind: &ResolvedKind,
    items: Vec<Value>,
    scope: &WatchScope,
    hasher: &SecretHasher,
) -> Vec<LiveObject> {
    items
        .into_iter()
        .filter_map(|item| {
            let in_scope = !kind.namespaced
                || scope.allows_namespace(
                    item.pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
            if in_scope {
                ingest(kind, item, hasher)
            } else {
                None
            }
        })
        .collect()
}

/// One page of a list: its items still as text (each checked to be JSON, not decoded).
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    metadata: PageMetadata,
    #[serde(default)]
    items: Option<Vec<Box<RawValue>>>,
}

#[derive(Default, Deserialize)]
struct PageMetadata {
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

/// Lists page by page (following `continue` tokens), handing each page's items to `each` as
/// JSON text: the caller decodes them where it works on them (a list's chunks, on several
/// threads), so a page of 500 Deployments is not one 1.5 MB decode on the task that fetches
/// the next. Pages are decoded here: kube-rs would log a body that fails to decode, and bodies
/// hold Secrets.
pub(crate) async fn for_each_page(
    client: &kube::Client,
    request: &kube::core::Request,
    mut params: ListParams,
    what: &str,
    mut each: impl FnMut(Vec<Box<RawValue>>),
) -> Result<()> {
    loop {
        let http_request = request.list(&params).map_err(|e| Error::Api {
            what: what.to_owned(),
            code: None,
            message: e.to_string(),
        })?;
        let text = client
            .request_text(http_request)
            .await
            .map_err(|e| Error::api(what, &e))?;
        tracing::trace!(what, bytes = text.len(), "page received");
        let page: Page = serde_json::from_str(&text).map_err(|source| Error::Decode {
            what: what.to_owned(),
            source,
        })?;
        drop(text);
        let token = page.metadata.continue_token.filter(|t| !t.is_empty());
        if let Some(items) = page.items {
            each(items);
        }
        tracing::trace!(what, "page parsed");
        match token {
            Some(token) => params.continue_token = Some(token),
            None => return Ok(()),
        }
    }
}

/// Reads one object in `api_version` (the version its Git manifest uses). `Ok(None)` when it
/// does not exist; [`Error::VersionNotServed`] when the server does not serve `kind` in that
/// version. One discovery request for the group version precedes the read, so a version the
/// server stopped serving is reported as such rather than as a missing object.
pub async fn get_in_version(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    hasher: &SecretHasher,
) -> Result<Option<LiveObject>> {
    let resolved = resolve_in_version(client, api_version, kind).await?;
    let namespace = (resolved.namespaced && !namespace.is_empty()).then_some(namespace);
    let what = match namespace {
        Some(ns) => format!("get {kind} {ns}/{name} in {api_version}"),
        None => format!("get {kind} {name} in {api_version}"),
    };
    let resource = resolved.api_resource();
    let request = kube::core::Request::new(DynamicObject::url_path(&resource, namespace))
        .get(name, &GetParams::default())
        .map_err(|e| Error::Api {
            what: what.clone(),
            code: None,
            message: e.to_string(),
        })?;
    let text = match client.request_text(request).await {
        Ok(text) => text,
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
        Err(err) => return Err(Error::api(&what, &err)),
    };
    let value: Value = serde_json::from_str(&text).map_err(|source| Error::Decode {
        what: what.clone(),
        source,
    })?;
    Ok(ingest(&resolved, value, hasher))
}

/// The plural and scope of `kind` in exactly `api_version`, from the server.
async fn resolve_in_version(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
) -> Result<ResolvedKind> {
    let not_served = || Error::VersionNotServed {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    };
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let list = if group.is_empty() {
        client.list_core_api_resources(version).await
    } else {
        client.list_api_group_resources(api_version).await
    };
    let list = match list {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.code == 404 => return Err(not_served()),
        Err(source) => {
            return Err(Error::Discovery {
                what: format!("resources of {api_version}"),
                source,
            });
        }
    };
    list.resources
        .into_iter()
        .find(|r| r.kind == kind && !r.name.contains('/'))
        .map(|r| ResolvedKind {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: r.kind,
            plural: r.name,
            namespaced: r.namespaced,
        })
        .ok_or_else(not_served)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(text: &str) -> std::result::Result<Page, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn a_page_keeps_its_items_as_text_and_its_continue_token() {
        let p = page(
            r#"{"kind":"ConfigMapList","metadata":{"resourceVersion":"7","continue":"abc"},
                "items":[{"metadata":{"name":"a"},"data":{"k":"v"}}, {"metadata":{"name":"b"}}]}"#,
        )
        .unwrap();
        assert_eq!(p.metadata.continue_token.as_deref(), Some("abc"));
        let items: Vec<&str> = p.items.iter().flatten().map(|i| i.get()).collect();
        assert_eq!(
            items,
            [
                r#"{"metadata":{"name":"a"},"data":{"k":"v"}}"#,
                r#"{"metadata":{"name":"b"}}"#
            ]
        );
        let decoded: Value = serde_json::from_str(items[0]).unwrap();
        assert_eq!(decoded["data"]["k"], "v");
    }

    #[test]
    fn the_last_page_and_an_empty_list() {
        let last = page(r#"{"metadata":{"continue":""},"items":null}"#).unwrap();
        assert_eq!(last.metadata.continue_token.as_deref(), Some(""));
        assert!(last.items.is_none());
        let bare = page(r#"{"items":[]}"#).unwrap();
        assert!(bare.metadata.continue_token.is_none());
        assert_eq!(bare.items.map(|i| i.len()), Some(0));
    }

    #[test]
    fn a_broken_page_is_an_error_that_does_not_quote_it() {
        let err = page(r#"{"items":[{"data":{"password":"hunter2"}}, {"data": }]}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
