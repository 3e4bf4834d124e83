//! The structural diff of a normalised desired object against a normalised live object.
//!
//! - Every field Git sets is compared (`changed`, or `removed` when absent live).
//! - Fields only live are server defaults unless they are additions made outside Git:
//!   owned (in `managedFields`) by a manager that is neither an applier nor a controller,
//!   present in the last-applied configuration, or — without any `managedFields` — new labels,
//!   annotations, ConfigMap/Secret keys and keyed list items.
//! - Keyed lists are matched by merge key; other lists are compared whole.
//!
//! Attribution (`manager`, `changed_at`) comes from the `managedFields` entries owning the path.

use std::cmp::Ordering;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::change::Op;
use crate::crd::CrdDefaults;
use crate::defaults::{self, StepRef};
use crate::object::ManagedFieldsEntry;
use crate::path::{FieldPath, Segment};
use crate::schema::{
    CONTAINER_LISTS, ItemKeys, is_empty_like, is_system_key, is_unstored_zero, is_user_map,
    item_keys, key_text, key_values_equal, merge_keys, scalars_equal, subset_equal,
};
use crate::warning::{self, Warning};

/// Stands in for a user-data map absent live.
static EMPTY_MAP: LazyLock<Value> = LazyLock::new(|| Value::Object(Map::new()));

/// Deepest nesting walked; deeper differences are reported at this depth, whole.
const MAX_DEPTH: usize = 128;

/// One raw difference, before classification and ignore rules.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawChange {
    pub field: FieldPath,
    pub op: Op,
    pub from: Option<Value>,
    pub to: Option<Value>,
    pub manager: Option<String>,
    pub changed_at: Option<DateTime<Utc>>,
}

/// One step of the current path: a map key (borrowed from the objects) or a keyed list item
/// with its typed merge-key values (as `managedFields` spells them).
#[derive(Debug, Clone)]
enum Step<'a> {
    Field(&'a str),
    Item(ItemKeys<'a>),
}

/// Who is who among field managers.
pub(crate) struct Managers<'a> {
    pub appliers: &'a [String],
    pub controllers: &'a [String],
}

impl Managers<'_> {
    fn is_applier(&self, manager: &str) -> bool {
        self.appliers.iter().any(|a| a == manager)
    }

    fn is_known(&self, manager: &str) -> bool {
        self.is_applier(manager) || self.controllers.iter().any(|c| c == manager)
    }
}

/// A keyed list item: its merge keys and the item.
type KeyedItem<'v> = (ItemKeys<'v>, &'v Value);

/// What the live object's last-applied configuration is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastApplied {
    /// The annotation exists.
    pub present: bool,
    /// It is exactly the Git manifest (then it is not passed to the walk).
    pub is_git: bool,
}

/// Walks desired and live together and collects raw changes.
pub(crate) struct Walker<'a> {
    kind: &'a str,
    /// The `apiVersion` compared (defaults differ between versions).
    api_version: &'a str,
    /// Defaults of custom resources.
    crd: &'a CrdDefaults,
    entries: Vec<&'a ManagedFieldsEntry>,
    managers: Managers<'a>,
    /// No `managedFields` at all: use the fallback rules for additions.
    fallback: bool,
    /// Some entry belongs to a manager outside appliers and controllers.
    has_foreign: bool,
    /// The object's last-applied configuration.
    last_applied: LastApplied,
    steps: Vec<Step<'a>>,
    out: Vec<RawChange>,
    warnings: Vec<Warning>,
}

// === impl Walker ===

impl<'a> Walker<'a> {
    pub(crate) fn new(
        kind: &'a str,
        api_version: &'a str,
        crd: &'a CrdDefaults,
        managed_fields: &'a [ManagedFieldsEntry],
        managers: Managers<'a>,
        last_applied: LastApplied,
    ) -> Self {
        // Status writes never own spec fields; skip them for attribution.
        let entries: Vec<&ManagedFieldsEntry> = managed_fields
            .iter()
            .filter(|e| e.subresource.as_deref() != Some("status"))
            .collect();
        let has_foreign = entries.iter().any(|e| !managers.is_known(&e.manager));
        Self {
            kind,
            api_version,
            crd,
            fallback: managed_fields.is_empty(),
            entries,
            managers,
            has_foreign,
            last_applied,
            steps: Vec::new(),
            out: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Compares two whole objects; `last_applied` is the normalised last-applied configuration.
    /// Returns the changes and the warnings (fields Git sets that the server rewrites).
    pub(crate) fn run(
        mut self,
        desired: &'a Value,
        live: &'a Value,
        last_applied: Option<&'a Value>,
    ) -> (Vec<RawChange>, Vec<Warning>) {
        match (desired, live) {
            (Value::Object(g), Value::Object(l)) => {
                let la = last_applied.and_then(Value::as_object);
                self.walk_map(g, l, la, 0);
            }
            _ => {
                if desired != live {
                    self.report(Op::Changed, Some(desired.clone()), Some(live.clone()), None);
                }
            }
        }
        (self.out, self.warnings)
    }

    fn push_key(&mut self, key: &'a str) {
        self.steps.push(Step::Field(key));
    }

    fn push_item(&mut self, keys: &ItemKeys<'a>) {
        self.steps.push(Step::Item(*keys));
    }

    fn pop(&mut self) {
        self.steps.pop();
    }

    /// The current path in contract form.
    fn path(&self) -> FieldPath {
        FieldPath::from_segments(
            self.steps
                .iter()
                .map(|step| match step {
                    Step::Field(key) => Segment::Key((*key).to_owned()),
                    Step::Item(keys) => Segment::Item(
                        keys.iter()
                            .map(|(k, v)| ((*k).to_owned(), key_text(v).unwrap_or_default()))
                            .collect(),
                    ),
                })
                .collect(),
        )
    }

    /// The map key at `back` steps from the end (0 = last), if that step is a key.
    fn key_at(&self, back: usize) -> Option<&'a str> {
        let index = self.steps.len().checked_sub(back + 1)?;
        match self.steps.get(index) {
            Some(Step::Field(key)) => Some(key),
            _ => None,
        }
    }

    /// The last two map keys of the path (list items skipped).
    fn last_keys(&self) -> (Option<&'a str>, Option<&'a str>) {
        let mut keys = self.steps.iter().rev().filter_map(|s| match s {
            Step::Field(k) => Some(*k),
            Step::Item(_) => None,
        });
        let key = keys.next();
        (key, keys.next())
    }

    /// The merge keys of the list at the current path, if it is a keyed list.
    fn list_keys(&self) -> Option<&'static [(&'static str, Option<&'static str>)]> {
        let last = self.key_at(0)?;
        let n = self.steps.len();
        let parent_is_container = n >= 3
            && matches!(self.steps.get(n - 2), Some(Step::Item(_)))
            && self.key_at(2).is_some_and(|k| CONTAINER_LISTS.contains(&k));
        merge_keys(self.kind, last, parent_is_container, n).or_else(|| {
            // A custom resource's list keyed by its schema.
            if self.crd.is_empty() {
                return None;
            }
            self.crd
                .list_keys_at(self.api_version, self.kind, &self.step_refs())
        })
    }

    fn walk_map(
        &mut self,
        git: &'a Map<String, Value>,
        live: &'a Map<String, Value>,
        la: Option<&'a Map<String, Value>>,
        depth: usize,
    ) {
        let root = depth == 0;
        let skipped = |key: &str| root && matches!(key, "apiVersion" | "kind" | "status");
        if keys_sorted(git) && keys_sorted(live) {
            // Normalised maps have sorted keys: pair them in one pass, without lookups.
            let mut g = git.iter().peekable();
            let mut l = live.iter().peekable();
            loop {
                let order = match (g.peek(), l.peek()) {
                    (None, None) => break,
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (Some((gk, _)), Some((lk, _))) => key_order(gk, lk),
                };
                match order {
                    Ordering::Less => {
                        if let Some((key, gv)) = g.next()
                            && !skipped(key)
                        {
                            self.git_field(key, gv, None, (git, live), la, depth);
                        }
                    }
                    Ordering::Greater => {
                        if let Some((key, lv)) = l.next()
                            && !skipped(key)
                        {
                            self.live_field(key, lv, live, la, depth);
                        }
                    }
                    Ordering::Equal => {
                        if let (Some((key, gv)), Some((_, lv))) = (g.next(), l.next())
                            && !skipped(key)
                        {
                            self.git_field(key, gv, Some(lv), (git, live), la, depth);
                        }
                    }
                }
            }
            return;
        }
        for (key, gv) in git {
            if !skipped(key) {
                self.git_field(key, gv, live.get(key), (git, live), la, depth);
            }
        }
        for (key, lv) in live {
            if !git.contains_key(key) && !skipped(key) {
                self.live_field(key, lv, live, la, depth);
            }
        }
    }

    /// A field Git sets, with its live value if any; `parents` are the Git and live maps that
    /// hold it.
    fn git_field(
        &mut self,
        key: &'a str,
        gv: &'a Value,
        lv: Option<&'a Value>,
        parents: (&'a Map<String, Value>, &'a Map<String, Value>),
        la: Option<&'a Map<String, Value>>,
        depth: usize,
    ) {
        self.push_key(key);
        // Only a handful of names can be rewritten by the server: test the name first, the
        // path only then (this runs for every field Git sets).
        if matches!(
            key,
            "serviceAccount" | "username" | "uid" | "groups" | "extra"
        ) && self.rewritten(key, gv, lv, parents.0)
        {
            self.pop();
            return;
        }
        let la_child = la.and_then(|m| m.get(key));
        match lv {
            Some(lv) => self.walk_value(gv, lv, la_child, depth + 1),
            None if is_unstored_zero(gv) => {}
            // A user-data map absent live (e.g. only dropped annotations were left): report
            // its entries, as if it were present and empty.
            None if is_user_map(key) && gv.is_object() => {
                self.walk_value(gv, &EMPTY_MAP, la_child, depth + 1);
            }
            None => self.report(Op::Removed, Some(gv.clone()), None, None),
        }
        self.pop();
    }

    /// A field only live; `parent` is the live map that holds it.
    fn live_field(
        &mut self,
        key: &'a str,
        lv: &'a Value,
        parent: &'a Map<String, Value>,
        la: Option<&'a Map<String, Value>>,
        depth: usize,
    ) {
        self.push_key(key);
        self.live_only(lv, Some(parent), la.and_then(|m| m.get(key)), depth + 1);
        self.pop();
    }

    /// A field the server rewrites whatever Git asks (the `serviceAccount` alias, a CSR's
    /// requester identity): never compared. Where Git's value can never be stored, says so once
    /// as a warning. Returns true when the field was handled here.
    fn rewritten(
        &mut self,
        key: &str,
        gv: &Value,
        lv: Option<&Value>,
        git_parent: &Map<String, Value>,
    ) -> bool {
        let steps = self.step_refs();
        if !defaults::is_rewritten(self.kind, self.api_version, &steps) {
            return false;
        }
        let (key_name, parent_name) = self.last_keys();
        let never = if key == "serviceAccount" {
            // The alias is derived from `serviceAccountName` when Git sets that; a difference
            // in Git itself can never be stored.
            match git_parent.get("serviceAccountName") {
                Some(name) => name != gv,
                None => return false,
            }
        } else {
            !lv.is_some_and(|lv| subset_equal(key_name, parent_name, gv, lv, 0))
        };
        if never {
            let why = if key == "serviceAccount" {
                "the server always sets the deprecated serviceAccount to serviceAccountName"
            } else {
                "the server sets it from the identity of the client that created the object"
            };
            self.warnings.push(Warning::new(
                self.path(),
                warning::SERVER_REWRITES,
                format!("Git can never match: the server rewrites this field ({why})"),
            ));
        }
        true
    }

    /// The current path as the defaults model reads it.
    fn step_refs(&self) -> Vec<StepRef<'a>> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Field(k) => StepRef::Field(k),
                Step::Item(_) => StepRef::Item,
            })
            .collect()
    }

    /// True when the live-only value at the current path is what the server puts there itself.
    fn server_default(&self, live: &Value, parent: Option<&Map<String, Value>>) -> bool {
        let mut steps = self.step_refs();
        defaults::is_server_default(
            self.kind,
            self.api_version,
            self.crd,
            &mut steps,
            live,
            parent,
        )
    }

    fn walk_value(&mut self, git: &'a Value, live: &'a Value, la: Option<&'a Value>, depth: usize) {
        if depth > MAX_DEPTH {
            if git != live {
                self.report(Op::Changed, Some(git.clone()), Some(live.clone()), la);
            }
            return;
        }
        match (git, live) {
            (Value::Object(g), Value::Object(l)) => {
                self.walk_map(g, l, la.and_then(Value::as_object), depth);
            }
            (Value::Array(g), Value::Array(l)) => {
                if let Some(keys) = self.list_keys()
                    && let Some(git_items) = keyed(keys, g)
                    && let Some(live_items) = keyed(keys, l)
                {
                    let la_items = la
                        .and_then(Value::as_array)
                        .and_then(|items| keyed(keys, items));
                    self.walk_keyed(&git_items, &live_items, la_items.as_deref(), depth);
                } else {
                    let (key, parent) = self.last_keys();
                    if !subset_equal(key, parent, git, live, 0) {
                        self.report(Op::Changed, Some(git.clone()), Some(live.clone()), la);
                    }
                }
            }
            (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
                self.report(Op::Changed, Some(git.clone()), Some(live.clone()), la);
            }
            _ => {
                let (key, parent) = self.last_keys();
                if !scalars_equal(key, parent, git, live) {
                    self.report(Op::Changed, Some(git.clone()), Some(live.clone()), la);
                }
            }
        }
    }

    fn walk_keyed(
        &mut self,
        git: &[KeyedItem<'a>],
        live: &[KeyedItem<'a>],
        la: Option<&[KeyedItem<'a>]>,
        depth: usize,
    ) {
        let la_item = |keys: &[(&'static str, &'a Value)]| {
            la.and_then(|items| {
                items
                    .iter()
                    .find(|(k, _)| same_keys(k, keys))
                    .map(|(_, v)| *v)
            })
        };
        for (keys, gv) in git {
            let found = live.iter().find(|(k, _)| same_keys(k, keys));
            // Typed key values as the server wrote them (live), for managedFields lookups.
            let typed = found.map_or(keys, |(k, _)| k);
            self.push_item(typed);
            match found {
                Some((_, lv)) => self.walk_value(gv, lv, la_item(keys), depth + 1),
                None => self.report(Op::Removed, Some((*gv).clone()), None, None),
            }
            self.pop();
        }
        for (keys, lv) in live {
            if git.iter().any(|(k, _)| same_keys(k, keys)) {
                continue;
            }
            self.push_item(keys);
            self.live_only(lv, None, la_item(keys), depth + 1);
            self.pop();
        }
    }

    /// A value present live and absent in Git, at the current path; `parent` is the live map
    /// holding it (`None` for a list item).
    fn live_only(
        &mut self,
        live: &'a Value,
        parent: Option<&'a Map<String, Value>>,
        la: Option<&'a Value>,
        depth: usize,
    ) {
        // Nothing below can be an addition: no last-applied value, no foreign manager, and
        // `managedFields` present (server defaults, the common case).
        if la.is_none() && !self.fallback && !self.has_foreign {
            return;
        }
        if is_empty_like(live) {
            return;
        }
        // What the server fills in by itself is no addition, whoever owns it now.
        if self.server_default(live, parent) {
            return;
        }
        // A user-data map absent in Git (labels, annotations, ConfigMap/Secret data): its
        // entries are the additions (contract §2.1: one change per added map entry).
        if let Value::Object(map) = live
            && self.is_entry_map()
        {
            let la_map = la.and_then(Value::as_object);
            for (key, value) in map {
                self.push_key(key);
                self.live_only(value, Some(map), la_map.and_then(|m| m.get(key)), depth + 1);
                self.pop();
            }
            return;
        }
        if let Some(applied) = la
            && !is_empty_like(applied)
        {
            // Someone applied a copy of the manifest that has this field and Git does not.
            self.report(Op::Added, None, Some(live.clone()), None);
            return;
        }
        if depth > MAX_DEPTH {
            return;
        }
        if self.fallback {
            self.fallback_live_only(live, depth);
            return;
        }
        if !self.has_foreign {
            return;
        }
        let owners = self.owners();
        let foreign = owners
            .iter()
            .filter(|e| !self.managers.is_known(&e.manager))
            .count();
        if foreign == 0 {
            return;
        }
        let keyed_list = self.keyed_live_list(live);
        if foreign == owners.len() {
            match keyed_list {
                Some(items) => self.live_only_items(&items, depth),
                None => self.report(Op::Added, None, Some(live.clone()), None),
            }
            return;
        }
        // Shared with the applier or a controller: look closer.
        match (live, keyed_list) {
            (_, Some(items)) => self.live_only_items(&items, depth),
            (Value::Object(map), None) => {
                for (key, value) in map {
                    self.push_key(key);
                    self.live_only(value, Some(map), None, depth + 1);
                    self.pop();
                }
            }
            _ => self.report(Op::Added, None, Some(live.clone()), None),
        }
    }

    /// The current path is a map whose entries are reported one by one: `metadata.labels`,
    /// `metadata.annotations` (of the object or a pod template) and ConfigMap/Secret `data`,
    /// `binaryData`, `stringData`.
    fn is_entry_map(&self) -> bool {
        match (self.key_at(0), self.key_at(1)) {
            (Some("labels" | "annotations"), Some("metadata")) => true,
            (Some("data" | "binaryData" | "stringData"), None) => {
                self.steps.len() == 1 && matches!(self.kind, "ConfigMap" | "Secret")
            }
            _ => false,
        }
    }

    fn keyed_live_list(&self, live: &'a Value) -> Option<Vec<KeyedItem<'a>>> {
        let items = live.as_array()?;
        keyed(self.list_keys()?, items)
    }

    fn live_only_items(&mut self, items: &[KeyedItem<'a>], depth: usize) {
        for (keys, value) in items {
            self.push_item(keys);
            self.live_only(value, None, None, depth + 1);
            self.pop();
        }
    }

    /// Additions when the object has no `managedFields`: new labels and annotations (not
    /// Kubernetes' own), new ConfigMap/Secret keys, new keyed list items.
    fn fallback_live_only(&mut self, live: &'a Value, depth: usize) {
        let n = self.steps.len();
        let last = self.key_at(0);
        let parent = self.key_at(1);
        let grandparent = self.key_at(2);
        let data_map = matches!(self.kind, "ConfigMap" | "Secret");
        // An entry of a labels/annotations map or of ConfigMap/Secret data.
        let in_meta_map =
            matches!(parent, Some("labels" | "annotations")) && grandparent == Some("metadata");
        let in_data = data_map && n == 2 && matches!(parent, Some("data" | "binaryData"));
        if in_meta_map {
            if !last.is_some_and(is_system_key) {
                self.report(Op::Added, None, Some(live.clone()), None);
            }
            return;
        }
        if in_data || matches!(self.steps.last(), Some(Step::Item(_))) {
            self.report(Op::Added, None, Some(live.clone()), None);
            return;
        }
        // A whole map or keyed list absent in Git: look at its entries.
        let whole_meta_map =
            matches!(last, Some("labels" | "annotations")) && parent == Some("metadata");
        let whole_data = data_map && n == 1 && matches!(last, Some("data" | "binaryData"));
        if let Some(items) = self.keyed_live_list(live) {
            self.live_only_items(&items, depth);
        } else if (whole_meta_map || whole_data)
            && let Value::Object(map) = live
        {
            for (key, value) in map {
                self.push_key(key);
                self.live_only(value, Some(map), None, depth + 1);
                self.pop();
            }
        }
    }

    /// Records a change at the current path, attributed from `managedFields`.
    fn report(&mut self, op: Op, from: Option<Value>, to: Option<Value>, la: Option<&Value>) {
        let (manager, changed_at) = match op {
            Op::Removed => (None, None),
            Op::Added => self.attribution(true),
            Op::Changed => {
                let (manager, at) = self.attribution(false);
                // The applier owns the field but its last-applied value is not the live one:
                // someone wrote the live value without recording a manager (`kubectl scale`
                // through the scale subresource on v1.20).
                let applier = manager
                    .as_deref()
                    .is_some_and(|m| self.managers.is_applier(m));
                // When last-applied is the Git manifest, its value here is Git's, which differs
                // from the live one (this is a change).
                let stale = applier
                    && (self.last_applied.is_git
                        || (self.last_applied.present
                            && match (la, to.as_ref()) {
                                (Some(applied), Some(live)) => {
                                    let (key, parent) = self.last_keys();
                                    !subset_equal(key, parent, applied, live, 0)
                                }
                                _ => false,
                            }));
                if stale { (None, None) } else { (manager, at) }
            }
        };
        self.out.push(RawChange {
            field: self.path(),
            op,
            from,
            to,
            manager,
            changed_at,
        });
    }

    /// The most recent owner of the current path (for additions, preferring managers outside
    /// appliers and controllers).
    fn attribution(&self, prefer_foreign: bool) -> (Option<String>, Option<DateTime<Utc>>) {
        let owners = self.owners();
        let foreign: Vec<&&ManagedFieldsEntry> = owners
            .iter()
            .filter(|e| !self.managers.is_known(&e.manager))
            .collect();
        let pool: Vec<&&ManagedFieldsEntry> = if prefer_foreign && !foreign.is_empty() {
            foreign
        } else {
            owners.iter().collect()
        };
        // Latest time wins; on equal times the later entry (the later write) wins.
        pool.into_iter()
            .enumerate()
            .max_by(|(i, a), (j, b)| a.time.cmp(&b.time).then(i.cmp(j)))
            .map_or((None, None), |(_, e)| (Some(e.manager.clone()), e.time))
    }

    /// Entries whose field set reaches the current path.
    fn owners(&self) -> Vec<&'a ManagedFieldsEntry> {
        self.entries
            .iter()
            .copied()
            .filter(|e| reaches(&e.fields, &self.steps))
            .collect()
    }
}

/// `a.cmp(b)` for the short strings map keys are, without a call into `memcmp`.
#[inline]
fn key_order(a: &str, b: &str) -> Ordering {
    for (x, y) in a.bytes().zip(b.bytes()) {
        if x != y {
            return x.cmp(&y);
        }
    }
    a.len().cmp(&b.len())
}

/// True when the map iterates in key order (normalised maps do).
fn keys_sorted(map: &Map<String, Value>) -> bool {
    map.keys()
        .is_sorted_by(|a, b| key_order(a, b) != Ordering::Greater)
}

/// The items of a keyed list with their merge keys, or `None` when some item cannot be keyed or
/// two items share a key (then the list is compared whole).
fn keyed<'v>(
    keys: &[(&'static str, Option<&'static str>)],
    items: &'v [Value],
) -> Option<Vec<KeyedItem<'v>>> {
    let mut out: Vec<KeyedItem<'v>> = Vec::with_capacity(items.len());
    for item in items {
        let k = item_keys(keys, item)?;
        if out.iter().any(|(other, _)| same_keys(other, &k)) {
            return None;
        }
        out.push((k, item));
    }
    Some(out)
}

/// Merge keys equal by value (`80` and `"80"` key the same port).
fn same_keys(a: &[(&str, &Value)], b: &[(&str, &Value)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && key_values_equal(va, vb))
}

/// True when the `fieldsV1` set reaches the path: every step is present (an empty set part way
/// down owns everything below it, as for atomic values).
fn reaches(fields: &Value, steps: &[Step<'_>]) -> bool {
    let mut node = fields;
    for step in steps {
        let Some(map) = node.as_object() else {
            return false;
        };
        if map.is_empty() {
            return true;
        }
        let next = match step {
            Step::Field(key) => field_entry(map, key),
            Step::Item(keys) => find_item(map, keys),
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    true
}

/// `f:<key>` without allocating.
fn field_entry<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    let mut name = String::with_capacity(key.len() + 2);
    name.push_str("f:");
    name.push_str(key);
    map.get(&name)
}

/// Finds `k:{…}` for an item: first the exact spelling the server writes (keys sorted, compact
/// JSON), then any `k:` key whose JSON names the same values.
fn find_item<'v>(map: &'v Map<String, Value>, keys: &[(&str, &Value)]) -> Option<&'v Value> {
    let mut sorted: Vec<&(&str, &Value)> = keys.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut exact = String::from("k:{");
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            exact.push(',');
        }
        exact.push_str(&Value::String((*k).to_owned()).to_string());
        exact.push(':');
        exact.push_str(&v.to_string());
    }
    exact.push('}');
    if let Some(node) = map.get(&exact) {
        return Some(node);
    }
    map.iter().find_map(|(name, node)| {
        let json = name.strip_prefix("k:")?;
        let parsed: Map<String, Value> = serde_json::from_str(json).ok()?;
        let all = parsed.len() == keys.len()
            && keys
                .iter()
                .all(|(k, v)| parsed.get(*k).is_some_and(|p| key_values_equal(p, v)));
        all.then_some(node)
    })
}
