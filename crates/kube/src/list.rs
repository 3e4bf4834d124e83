//! One-shot reads: the list behind `driftguard check`, and one object in the `apiVersion` its Git
//! manifest uses (contract §1).
//!
//! Responses are fetched as text and decoded here rather than through `Api<DynamicObject>`:
//! kube-rs logs the whole response body when decoding fails, and these bodies hold Secrets.

use std::ops::Range;
use std::sync::Arc;

use driftguard_core::{LiveObject, SecretHasher};
use futures::StreamExt as _;
use kube::Resource as _;
use kube::api::{DynamicObject, GetParams, ListParams};
use serde_json::Value;

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
    // Each page is read on blocking threads, a chunk of its items per thread (decoding and
    // ingestion — redaction, normalisation, hashing — are all of a list's CPU), while the next
    // page is fetched.
    let mut reading: Vec<tokio::task::JoinHandle<Result<Vec<LiveObject>>>> = Vec::new();
    for_each_raw_page(client, &request, params, &what, |page| {
        let count = page.len();
        let chunks = count.div_ceil(INGEST_CHUNK).max(1);
        let size = count.div_ceil(chunks).max(1);
        for chunk in page.chunks(size) {
            let (kind, scope, hasher, what) =
                (kind.clone(), scope.clone(), hasher.clone(), what.clone());
            reading.push(tokio::task::spawn_blocking(move || {
                Ok(ingest_in_scope(
                    &kind,
                    chunk.values(&what)?,
                    &scope,
                    &hasher,
                ))
            }));
        }
    })
    .await?;
    let mut objects = Vec::new();
    for chunk in reading {
        objects.extend(chunk.await.map_err(|e| Error::Api {
            what: what.clone(),
            code: None,
            message: format!("reading the list stopped: {e}"),
        })??);
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

/// Lists page by page (following `continue` tokens), handing each page's items to `each`. Pages
/// are decoded here: kube-rs would log a body that fails to decode, and bodies hold Secrets.
pub(crate) async fn for_each_page(
    client: &kube::Client,
    request: &kube::core::Request,
    params: ListParams,
    what: &str,
    mut each: impl FnMut(Vec<Value>),
) -> Result<()> {
    let mut failed = None;
    for_each_raw_page(client, request, params, what, |page| {
        if failed.is_none() {
            match page.all().values(what) {
                Ok(items) => each(items),
                Err(e) => failed = Some(e),
            }
        }
    })
    .await?;
    failed.map_or(Ok(()), Err)
}

/// [`for_each_page`] with each page's items still undecoded: the page's text, shared, and where
/// each item lies in it, found by one scan that builds nothing (strings and escapes respected;
/// see [`split_items`]), so the items can be decoded on several threads. A page that does not
/// scan as a list (it always does) is decoded whole, as before.
async fn for_each_raw_page(
    client: &kube::Client,
    request: &kube::core::Request,
    mut params: ListParams,
    what: &str,
    mut each: impl FnMut(RawPage),
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
        let decode = |source| Error::Decode {
            what: what.to_owned(),
            source,
        };
        let (page, token) = match split_items(&text) {
            Some((items, metadata)) => {
                let metadata: Value = match metadata {
                    Some(span) => serde_json::from_str(&text[span]).map_err(decode)?,
                    None => Value::Null,
                };
                let page = RawPage {
                    text: Arc::from(text),
                    items: Arc::from(items),
                    range: 0..0,
                };
                (page.all(), continue_token(&metadata))
            }
            None => {
                let mut page: Value = serde_json::from_str(&text).map_err(decode)?;
                drop(text);
                let token = page.get("metadata").and_then(continue_token);
                let items = match page.get_mut("items").map(Value::take) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                (RawPage::decoded(items), token)
            }
        };
        each(page);
        tracing::trace!(what, "page split");
        match token {
            Some(token) => params.continue_token = Some(token),
            None => return Ok(()),
        }
    }
}

fn continue_token(metadata: &Value) -> Option<String> {
    metadata
        .get("continue")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// Some items of one list page: spans of its shared text (or items decoded already).
struct RawPage {
    text: Arc<str>,
    items: Arc<[Range<usize>]>,
    /// The items of `items` this part holds; for a page decoded whole, `decoded` holds them.
    range: Range<usize>,
}

impl RawPage {
    fn decoded(items: Vec<Value>) -> Self {
        // A decoded page is carried as the JSON text of its items, one span each.
        let mut text = String::new();
        let mut spans = Vec::with_capacity(items.len());
        for item in &items {
            let start = text.len();
            text.push_str(&item.to_string());
            spans.push(start..text.len());
        }
        let count = spans.len();
        Self {
            text: Arc::from(text),
            items: Arc::from(spans),
            range: 0..count,
        }
    }

    /// The whole page.
    fn all(mut self) -> Self {
        self.range = 0..self.items.len();
        self
    }

    fn len(&self) -> usize {
        self.range.len()
    }

    /// This page in parts of `size` items.
    fn chunks(&self, size: usize) -> Vec<RawPage> {
        let size = size.max(1);
        (self.range.start..self.range.end)
            .step_by(size)
            .map(|start| RawPage {
                text: Arc::clone(&self.text),
                items: Arc::clone(&self.items),
                range: start..(start + size).min(self.range.end),
            })
            .collect()
    }

    /// The items decoded (serde's message names a position, never the content).
    fn values(&self, what: &str) -> Result<Vec<Value>> {
        self.items
            .get(self.range.clone())
            .unwrap_or_default()
            .iter()
            .map(|span| {
                serde_json::from_str(self.text.get(span.clone()).unwrap_or_default()).map_err(
                    |source| Error::Decode {
                        what: what.to_owned(),
                        source,
                    },
                )
            })
            .collect()
    }
}

/// Where each item of a list page (`{"kind":…,"metadata":{…},"items":[{…},…]}`) lies in its
/// text, and where its `metadata` does: one pass over the bytes, strings and escapes respected,
/// nothing built. `None` when the text is not an object with an `items` array laid out that way
/// (the caller then decodes it whole, and reports what is wrong). Each item is checked when it
/// is decoded; the scan checks the structure around them (separators, brackets, nothing after
/// the page).
fn split_items(text: &str) -> Option<(Vec<Range<usize>>, Option<Span>)> {
    let mut scan = Scan {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut items = None;
    let mut metadata = None;
    scan.expect(b'{')?;
    if !scan.next_is(b'}') {
        loop {
            let key = scan.string()?;
            scan.expect(b':')?;
            scan.skip_ws();
            match text.get(key)? {
                "\"items\"" => items = Some(scan.array_items()?),
                "\"metadata\"" => metadata = Some(scan.value()?),
                _ => {
                    // `kind`, `apiVersion`: checked as a whole decode would check them.
                    let span = scan.value()?;
                    serde_json::from_str::<serde::de::IgnoredAny>(text.get(span)?).ok()?;
                }
            }
            if !scan.next_is(b',') {
                break;
            }
        }
        scan.expect(b'}')?;
    }
    scan.skip_ws();
    (scan.at == scan.bytes.len()).then_some(())?;
    Some((items?, metadata))
}

/// Where a value lies in a text.
type Span = Range<usize>;

/// A cursor over a JSON text that finds where values start and end without decoding them.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    fn skip_ws(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    /// Skips whitespace and `byte`, if it is next.
    fn next_is(&mut self, byte: u8) -> bool {
        self.skip_ws();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.next_is(byte).then_some(())
    }

    /// A string (quotes included).
    fn string(&mut self) -> Option<Range<usize>> {
        self.skip_ws();
        let start = self.at;
        (self.bytes.get(self.at) == Some(&b'"')).then_some(())?;
        self.at += 1;
        loop {
            match self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(start..self.at);
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }

    /// One value: a string, an object or array (brackets matched, strings skipped), or a
    /// scalar up to the next separator.
    fn value(&mut self) -> Option<Range<usize>> {
        self.skip_ws();
        let start = self.at;
        match self.bytes.get(self.at)? {
            b'"' => self.string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.bytes.get(self.at)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                self.at += 1;
                                return Some(start..self.at);
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while self.bytes.get(self.at).is_some_and(|b| {
                    !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.at += 1;
                }
                (self.at > start).then_some(start..self.at)
            }
        }
    }

    /// The items of an array, each a value's span.
    fn array_items(&mut self) -> Option<Vec<Range<usize>>> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        if self.next_is(b']') {
            return Some(items);
        }
        loop {
            items.push(self.value()?);
            if !self.next_is(b',') {
                break;
            }
        }
        self.expect(b']')?;
        Some(items)
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

    /// The items and `metadata` of a page as the scan finds them, decoded.
    fn split(text: &str) -> Option<(Vec<Value>, Value)> {
        let (items, metadata) = split_items(text)?;
        let items = items
            .into_iter()
            .map(|span| serde_json::from_str(&text[span]).unwrap())
            .collect();
        let metadata = metadata.map_or(Value::Null, |span| {
            serde_json::from_str(&text[span]).unwrap()
        });
        Some((items, metadata))
    }

    /// What decoding the whole page gives.
    fn whole(text: &str) -> (Vec<Value>, Value) {
        let page: Value = serde_json::from_str(text).unwrap();
        (
            page["items"].as_array().cloned().unwrap_or_default(),
            page.get("metadata").cloned().unwrap_or(Value::Null),
        )
    }

    #[test]
    fn a_page_splits_into_the_items_a_whole_decode_gives() {
        for text in [
            r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"7","continue":"abc"},"items":[{"metadata":{"name":"a"},"data":{"k":"x,}]\"{[","e":"\\\"\\\\"}},{"b":[1,2.5e3,{"c":null}],"t":true}]}"#,
            "{ \"items\" : [ ] , \"metadata\" : { } }",
            "\n{\"items\":[{\"a\":\"\u{e9}\\u00e9\"}\n,\t{\"b\":-1}],\"kind\":\"List\"}\n",
            r#"{"apiVersion":"apps/v1","items":[{"x":"}}}]]]"},{"y":"\\"},{"z":[[[]]]}],"metadata":{"continue":""}}"#,
        ] {
            let (items, metadata) = split(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!((items, metadata.clone()), whole(text), "{text}");
            assert_eq!(
                continue_token(&metadata),
                whole(text)
                    .1
                    .get("continue")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
            );
        }
    }

    #[test]
    fn what_does_not_scan_as_a_page_is_left_to_a_whole_decode() {
        for text in [
            "",
            "[]",
            r#"{"items":[{"a":1}]} trailing"#,
            r#"{"items":[{"a":1}"#,
            r#"{"items":{"a":1}}"#,
            r#"{"kind":tru,"items":[]}"#,
            r#"{"items":[{"a":1}}]}"#,
            r#"{"items":[{"a":"1}]}"#,
            r#"{"metadata":{},"kind":"List"}"#,
            r#"{"items":[1 2]}"#,
        ] {
            assert!(split_items(text).is_none(), "{text}");
        }
    }

    #[test]
    fn a_page_is_read_in_parts_that_keep_every_item_once_in_order() {
        let items: Vec<String> = (0..10).map(|i| format!("{{\"n\":{i}}}")).collect();
        let text = format!("{{\"items\":[{}]}}", items.join(","));
        let (spans, _) = split_items(&text).unwrap();
        let page = RawPage {
            text: Arc::from(text.as_str()),
            items: Arc::from(spans),
            range: 0..0,
        }
        .all();
        assert_eq!(page.len(), 10);
        let read: Vec<Value> = page
            .chunks(4)
            .iter()
            .flat_map(|part| part.values("list").unwrap())
            .collect();
        let expected: Vec<Value> = (0..10).map(|i| serde_json::json!({ "n": i })).collect();
        assert_eq!(read, expected);
        let decoded = RawPage::decoded(expected.clone()).all();
        assert_eq!(decoded.values("list").unwrap(), expected);
    }
}
