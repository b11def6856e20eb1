//! What a [`KeyedJoin`](super::KeyedJoin) needs to restart without changing its answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A small summary of a join's state, stored with offset commits.
///
/// Serialized as `{"decided_before": {"BTCUSDT": 1746631831891}}` (plus `table_only` when
/// some key has table records but no probe yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Ord",
    deserialize = "K: Deserialize<'de> + Ord"
))]
pub struct JoinCheckpoint<K> {
    /// Per key, `P_c` = min(oldest pending probe time, probe watermark), raised to the
    /// fence of an earlier restart: every probe of the key with `t < P_c` has been decided
    /// (matched, unmatched or late). Keys whose probe watermark is minus infinity are absent.
    pub decided_before: BTreeMap<K, i64>,
    /// Keys with buffered table records but no probe yet: the time of their oldest table
    /// record, so that the replay rebuilds it (no probe means nothing evicted it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub table_only: BTreeMap<K, i64>,
}

impl<K> Default for JoinCheckpoint<K> {
    fn default() -> Self {
        JoinCheckpoint {
            decided_before: BTreeMap::new(),
            table_only: BTreeMap::new(),
        }
    }
}

impl<K> JoinCheckpoint<K> {
    /// The event time to replay both inputs from (the first record whose timestamp is at or
    /// after it, table records being timestamped with their `e`): `min_K P_c(K) - S`, or
    /// earlier for keys with only table records. `None` when the join held no state, so
    /// that resuming at the committed offsets is exact.
    ///
    /// Why `P_c - S` suffices: a probe with `t >= P_c` needs the table record at
    /// `floor(t/S)*S > P_c - S`, and any record that made such a probe late or unmatched in
    /// the uninterrupted run has a time above it too, so all of them are replayed.
    pub fn replay_from(&self, slide_ms: i64) -> Option<i64> {
        let probes = self
            .decided_before
            .values()
            .map(|&p| p.saturating_sub(slide_ms));
        probes.chain(self.table_only.values().copied()).min()
    }

    pub fn is_empty(&self) -> bool {
        self.decided_before.is_empty() && self.table_only.is_empty()
    }
}
