//! The per-epoch record of a training run, written as CSV after every epoch, and as JSON into
//! the checkpoint that resume reads.

use crate::train::checkpoint::write_atomically;
use crate::{Error, Result};
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
    /// Optimizer steps taken in the epoch: its batches, or fewer if
    /// [`TrainConfig::max_steps`](crate::train::TrainConfig::max_steps) ended training in it.
    pub steps: usize,
    /// Training samples seen in the epoch.
    pub samples: usize,
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
    out.push_str(",lr,seconds,samples_per_sec,steps\n");
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
        out.push_str(&format!(",{},{:.3},{:.1},{}\n", r.lr, r.seconds, r.samples_per_sec, r.steps));
    }
    write_atomically(path, out.as_bytes())
}

/// The records as a JSON array (for a checkpoint's metadata).
pub(crate) fn to_json(records: &[EpochRecord]) -> String {
    let rows: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "epoch": r.epoch, "train_loss": r.train_loss, "val_loss": r.val_loss,
                "metrics": r.metrics, "lr": r.lr, "seconds": r.seconds, "samples_per_sec": r.samples_per_sec,
                "steps": r.steps, "samples": r.samples,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// Records from [`to_json`]'s text, read from the checkpoint at `path`.
pub(crate) fn from_json(text: &str, path: &Path) -> Result<Vec<EpochRecord>> {
    let bad = || Error::format(path, "safetensors", "the training history in the metadata is malformed");
    let rows: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|_| bad())?;
    rows.iter()
        .map(|r| {
            let f = |k: &str| r.get(k).and_then(serde_json::Value::as_f64);
            let count = |k: &str| r.get(k).and_then(serde_json::Value::as_u64).map(|v| v as usize);
            Ok(EpochRecord {
                epoch: count("epoch").ok_or_else(bad)?,
                train_loss: f("train_loss").ok_or_else(bad)?,
                val_loss: f("val_loss"),
                metrics: serde_json::from_value(r.get("metrics").cloned().unwrap_or_default())
                    .map_err(|_| bad())?,
                lr: f("lr").ok_or_else(bad)?,
                seconds: f("seconds").unwrap_or(0.0),
                samples_per_sec: f("samples_per_sec").unwrap_or(0.0),
                steps: count("steps").ok_or_else(bad)?,
                samples: count("samples").ok_or_else(bad)?,
            })
        })
        .collect()
}
