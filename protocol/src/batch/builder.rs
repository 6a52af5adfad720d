//! Building batches on the producer side.

/// Accumulates records and finishes them into one batch.
#[derive(Debug, Default)]
pub struct BatchBuilder {}
