//! The per-epoch record of a training run, written as CSV after every epoch.

use crate::Result;
use crate::train::checkpoint::write_atomically;
use std::collections::BTreeMap;
use std::path::Path;

/// What one epoch produced.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Mean validation loss, if there is a validation set.
    pub val_loss: Option<f64>,
    /// Validation metrics by name (accuracy, precision, recall, f1, roc_auc).
    pub metrics: BTreeMap<String, f64>,
    /// The learning rate used.
    pub lr: f64,
    /// Wall-clock seconds of the training part of the epoch.
    pub seconds: f64,
    /// Training throughput.
    pub samples_per_sec: f64,
}

/// Writes the records as CSV (one row per epoch; metric columns from the union of names).
pub fn write_csv(path: &Path, records: &[EpochRecord]) -> Result<()> {
    let metric_names: Vec<&String> = records
        .iter()
        .flat_map(|r| r.metrics.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = String::from("epoch,train_loss,val_loss");
    for m in &metric_names {
        out.push(',');
        out.push_str(m);
    }
    out.push_str(",lr,seconds,samples_per_sec\n");
    for r in records {
        out.push_str(&format!(
            "{},{},{}",
            r.epoch,
            r.train_loss,
            r.val_loss.map_or(String::new(), |v| v.to_string())
        ));
        for m in &metric_names {
            out.push_str(&format!(",{}", r.metrics.get(*m).map_or(String::new(), |v| v.to_string())));
        }
        out.push_str(&format!(",{},{:.3},{:.1}\n", r.lr, r.seconds, r.samples_per_sec));
    }
    write_atomically(path, out.as_bytes())
}
