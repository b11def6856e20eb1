//! Planning a batch: records to documents, collection names checked once per batch,
//! later records of the same key replacing earlier ones. No I/O.

use std::{
    collections::{hash_map::Entry, BTreeMap, HashMap},
    sync::Arc,
};

use framework::InputRecord;

use crate::{
    documents::{reason, Planned},
    names::namespace_problem,
    sink::MongoSink,
    write::DocOp,
};

/// What a batch turns into before anything is sent.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub ops: Vec<DocOp>,
    /// Distinct collections of `ops`.
    pub collections: Vec<Arc<str>>,
    /// Rejected records by index in the batch: (reason, detail).
    pub rejected: BTreeMap<usize, (&'static str, String)>,
}

/// `text` cut to `max` characters, for details that quote input.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

impl MongoSink {
    pub(crate) fn plan(&self, batch: &[InputRecord<'_>]) -> Plan {
        let mut plan = Plan::default();
        // Collection name -> interned name, or why it cannot be used.
        let mut interned: HashMap<String, Result<Arc<str>, (&'static str, String)>> =
            HashMap::new();
        let mut new_collections = 0usize;
        // (collection, encoded filter) -> op: a later record of the batch replaces an
        // earlier one, as a later write would (and two upserts of one key in one unordered
        // bulk could race).
        let mut by_key: HashMap<(Arc<str>, Vec<u8>), usize> = HashMap::new();

        for (index, record) in batch.iter().enumerate() {
            let documents = match self.layout.documents(record.payload) {
                Ok(documents) => documents,
                Err(e) => {
                    plan.rejected.insert(index, (e.reason, e.detail));
                    continue;
                }
            };
            // Every document of the record must be writable, or none is written.
            let mut resolved = Vec::with_capacity(documents.len());
            let mut refusal = None;
            for planned in documents {
                let name = match interned.get(&planned.collection) {
                    Some(name) => name.clone(),
                    None => {
                        let name = self.intern(&planned.collection, new_collections);
                        if let Ok(name) = &name {
                            if !self.ready.contains(name.as_ref()) {
                                new_collections += 1;
                            }
                            plan.collections.push(Arc::clone(name));
                        }
                        interned.insert(planned.collection.clone(), name.clone());
                        name
                    }
                };
                match name {
                    Ok(name) => resolved.push((name, planned)),
                    Err(problem) => {
                        refusal = Some(problem);
                        break;
                    }
                }
            }
            if let Some(problem) = refusal {
                plan.rejected.insert(index, problem);
                continue;
            }
            for (
                collection,
                Planned {
                    filter, document, ..
                },
            ) in resolved
            {
                let mut encoded = Vec::new();
                if let Err(e) = filter.to_writer(&mut encoded) {
                    plan.rejected.insert(
                        index,
                        (reason::WRITE_ERROR, format!("key not encodable: {e}")),
                    );
                    break;
                }
                let op = DocOp {
                    record: index,
                    collection: Arc::clone(&collection),
                    filter,
                    document,
                };
                match by_key.entry((collection, encoded)) {
                    Entry::Occupied(slot) => plan.ops[*slot.get()] = op,
                    Entry::Vacant(slot) => {
                        slot.insert(plan.ops.len());
                        plan.ops.push(op);
                    }
                }
            }
        }
        plan.ops
            .retain(|op| !plan.rejected.contains_key(&op.record));
        let used: std::collections::HashSet<&Arc<str>> =
            plan.ops.iter().map(|op| &op.collection).collect();
        let collections = plan
            .collections
            .iter()
            .filter(|c| used.contains(c))
            .cloned()
            .collect();
        plan.collections = collections;
        plan
    }

    /// A rendered collection name checked against MongoDB's rules and `max_collections`.
    fn intern(&self, name: &str, new_in_batch: usize) -> Result<Arc<str>, (&'static str, String)> {
        if let Some(problem) = namespace_problem(&self.config.database, name) {
            return Err((
                reason::INVALID_COLLECTION,
                format!(
                    "collection {:?} is invalid: {problem}",
                    truncate_chars(name, 80)
                ),
            ));
        }
        if !self.ready.contains(name)
            && self.ready.len() + new_in_batch >= self.config.max_collections
        {
            return Err((
                reason::TOO_MANY_COLLECTIONS,
                format!(
                    "collection {:?} would exceed max_collections ({})",
                    truncate_chars(name, 80),
                    self.config.max_collections
                ),
            ));
        }
        Ok(Arc::from(name))
    }
}
