//! Placeholder module owned by a parallel work stream; filled in before commit.
