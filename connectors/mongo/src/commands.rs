//! Classic per-collection write commands (`update` / `delete` / `insert`), for servers
//! without the client-level `bulkWrite` (MongoDB < 8.0).

use std::collections::BTreeMap;

use mongodb::{
    bson::{doc, Bson, Document},
    results::SummaryBulkWriteResult,
};

use crate::{
    error::MongoSinkError,
    retry::{is_transient, Failure},
    sink::MongoSink,
    write::{Phase, PhaseRequest, PhaseResult},
};

/// Statements per per-collection command: far below the server's 100,000 and keeps
/// commands well under 16 MB.
const STATEMENTS_PER_COMMAND: usize = 10_000;

impl MongoSink {
    /// Classic `update` / `delete` / `insert` commands, unordered, one per collection
    /// (and per [`STATEMENTS_PER_COMMAND`]): for servers without `bulkWrite`.
    pub(crate) async fn per_collection(
        &self,
        request: PhaseRequest<'_>,
    ) -> Result<PhaseResult, MongoSinkError> {
        let database = request.client.database(&self.config.database);
        let write_concern = mongodb::bson::to_document(&self.write_concern).map_err(|e| {
            MongoSinkError::Permanent {
                operation: "write concern encoding",
                target: self.config.database.clone(),
                message: e.to_string(),
            }
        })?;
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (position, &op) in request.pending.iter().enumerate() {
            groups
                .entry(&request.ops[op].collection)
                .or_default()
                .push(position);
        }
        let mut result = PhaseResult::ok(SummaryBulkWriteResult::default());
        for (collection, positions) in groups {
            for chunk in positions.chunks(STATEMENTS_PER_COMMAND) {
                let statements = chunk.iter().map(|&p| {
                    let op = &request.ops[request.pending[p]];
                    match request.phase {
                        Phase::Upsert => {
                            doc! { "q": op.filter.clone(), "u": op.document.clone(), "upsert": true }
                        }
                        Phase::Delete => doc! { "q": op.filter.clone(), "limit": 0 },
                        Phase::Insert => op.document.clone(),
                    }
                });
                let statements: Vec<Document> = statements.collect();
                let mut command = match request.phase {
                    Phase::Upsert => doc! { "update": collection, "updates": statements },
                    Phase::Delete => doc! { "delete": collection, "deletes": statements },
                    Phase::Insert => doc! { "insert": collection, "documents": statements },
                };
                command.insert("ordered", false);
                command.insert("writeConcern", write_concern.clone());
                let reply = match self
                    .or_shutdown(request.ctx, request.attempts, database.run_command(command))
                    .await?
                {
                    Ok(reply) => reply,
                    Err(e) if is_transient(&e) => {
                        let message = self.redact(&e.to_string());
                        for &p in chunk {
                            result.failed.insert(p, Failure::Transient(message.clone()));
                        }
                        continue;
                    }
                    Err(e) => return Err(self.permanent(&e)),
                };
                self.read_reply(request.phase, &reply, chunk, &mut result);
            }
        }
        Ok(result)
    }

    /// Folds a write command's reply (`n`, `upserted`, `writeErrors`,
    /// `writeConcernError`) into `result`.
    fn read_reply(
        &self,
        phase: Phase,
        reply: &Document,
        chunk: &[usize],
        result: &mut PhaseResult,
    ) {
        let number = |key: &str| match reply.get(key) {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Double(n)) => *n as i64,
            _ => 0,
        };
        let n = number("n");
        let upserted = reply.get_array("upserted").map_or(0, |u| u.len() as i64);
        match phase {
            Phase::Upsert => {
                result.counts.upserted_count += upserted;
                result.counts.matched_count += n - upserted;
            }
            Phase::Delete => result.counts.deleted_count += n,
            Phase::Insert => result.counts.inserted_count += n,
        }
        if let Ok(errors) = reply.get_array("writeErrors") {
            for error in errors.iter().filter_map(Bson::as_document) {
                let index = match error.get("index") {
                    Some(Bson::Int32(i)) => usize::try_from(*i).ok(),
                    Some(Bson::Int64(i)) => usize::try_from(*i).ok(),
                    _ => None,
                };
                let code = error.get_i32("code").unwrap_or(0);
                let text = format!(
                    "write error {code} ({}): {}",
                    error.get_str("codeName").unwrap_or("unknown"),
                    error.get_str("errmsg").unwrap_or("")
                );
                match index.and_then(|i| chunk.get(i)) {
                    Some(&p) => {
                        result
                            .failed
                            .insert(p, Failure::from_code(code, self.redact(&text)));
                    }
                    // An error the server did not tie to a statement: retry the chunk.
                    None => result.transient = Some(self.redact(&text)),
                }
            }
        }
        if let Ok(wc) = reply.get_document("writeConcernError") {
            result.transient = Some(self.redact(&format!(
                "write concern error {}: {}",
                wc.get_i32("code").unwrap_or(0),
                wc.get_str("errmsg").unwrap_or("")
            )));
        }
    }
}
