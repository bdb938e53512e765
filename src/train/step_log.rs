//! The per-step record of a training run: each optimizer step's loss and learning rate, the
//! validation loss where the run evaluated, and the gradient norm of every parameter at the steps
//! they were asked for. Written as `steps.csv` and `grad_norms.csv`, and as JSON into the
//! checkpoint that resume reads.

use crate::train::checkpoint::write_atomically;
use crate::{Error, Result};
use serde_json::{Value, json};
use std::path::Path;

/// One optimizer step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// The step's number, from 1, counting resumed steps.
    pub step: usize,
    /// The training loss of the step's batch (the mean over its micro-batches when gradients are
    /// accumulated).
    pub loss: f64,
    /// The learning rate the step was taken at.
    pub lr: f64,
    /// The validation loss measured after the step, where the run evaluated.
    pub val_loss: Option<f64>,
}

/// The L2 norm of each parameter's gradient (before clipping) at one step.
#[derive(Clone, Debug, PartialEq)]
pub struct GradNormRecord {
    /// The step's number.
    pub step: usize,
    /// One norm per parameter, in the order of the log's names; NaN for a parameter that had no
    /// gradient.
    pub norms: Vec<f64>,
}

/// The gradient norms of a run, by parameter name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradNormLog {
    /// The names of the parameters the optimizer trains, in the model's state-dict order (a tied
    /// tensor once, under its first name).
    pub names: Vec<String>,
    /// The steps logged, in order.
    pub records: Vec<GradNormRecord>,
}

/// A value for a CSV cell: empty where there is none (or it is NaN).
fn cell(v: Option<f64>) -> String {
    v.filter(|v| !v.is_nan()).map_or(String::new(), |v| v.to_string())
}

/// Writes `steps.csv`: `step,loss,lr,val_loss`, one row per step, the validation loss empty where
/// the run did not evaluate.
pub fn write_steps_csv(path: &Path, records: &[StepRecord]) -> Result<()> {
    let mut out = String::from("step,loss,lr,val_loss\n");
    for r in records {
        out.push_str(&format!("{},{},{},{}\n", r.step, cell(Some(r.loss)), r.lr, cell(r.val_loss)));
    }
    write_atomically(path, out.as_bytes())
}

/// Writes `grad_norms.csv`: `step` and one column per parameter name.
pub fn write_grad_norms_csv(path: &Path, log: &GradNormLog) -> Result<()> {
    let mut out = String::from("step");
    for name in &log.names {
        out.push(',');
        out.push_str(name);
    }
    out.push('\n');
    for r in &log.records {
        out.push_str(&r.step.to_string());
        for &norm in &r.norms {
            out.push(',');
            out.push_str(&cell(Some(norm)));
        }
        out.push('\n');
    }
    write_atomically(path, out.as_bytes())
}

/// The step records as compact JSON rows `[step, loss, lr, val_loss]` (for a checkpoint's
/// metadata).
pub(crate) fn steps_to_json(records: &[StepRecord]) -> String {
    let rows: Vec<Value> = records.iter().map(|r| json!([r.step, r.loss, r.lr, r.val_loss])).collect();
    Value::Array(rows).to_string()
}

/// A JSON number, with the null that serde writes for NaN read back as NaN.
fn number(v: &Value) -> Option<f64> {
    if v.is_null() { Some(f64::NAN) } else { v.as_f64() }
}

/// Step records from [`steps_to_json`]'s text, read from the checkpoint at `path`.
pub(crate) fn steps_from_json(text: &str, path: &Path) -> Result<Vec<StepRecord>> {
    let bad = || Error::format(path, "safetensors", "the step log in the metadata is malformed");
    let rows: Vec<Vec<Value>> = serde_json::from_str(text).map_err(|_| bad())?;
    rows.iter()
        .map(|row| match row.as_slice() {
            [step, loss, lr, val] => Ok(StepRecord {
                step: step.as_u64().ok_or_else(bad)? as usize,
                loss: number(loss).ok_or_else(bad)?,
                lr: lr.as_f64().ok_or_else(bad)?,
                val_loss: val.as_f64(),
            }),
            _ => Err(bad()),
        })
        .collect()
}

/// The gradient-norm log as JSON `{"names": [...], "rows": [[step, norm, ...], ...]}`.
pub(crate) fn grad_norms_to_json(log: &GradNormLog) -> String {
    let rows: Vec<Value> = log
        .records
        .iter()
        .map(|r| {
            Value::Array(std::iter::once(json!(r.step)).chain(r.norms.iter().map(|n| json!(n))).collect())
        })
        .collect();
    json!({ "names": log.names, "rows": rows }).to_string()
}

/// The gradient-norm log from [`grad_norms_to_json`]'s text, read from the checkpoint at `path`.
pub(crate) fn grad_norms_from_json(text: &str, path: &Path) -> Result<GradNormLog> {
    let bad = || Error::format(path, "safetensors", "the gradient-norm log in the metadata is malformed");
    let value: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let names: Vec<String> = serde_json::from_value(value["names"].clone()).map_err(|_| bad())?;
    let rows: Vec<Vec<Value>> = serde_json::from_value(value["rows"].clone()).map_err(|_| bad())?;
    let records = rows
        .iter()
        .map(|row| {
            let (step, norms) = row.split_first().ok_or_else(bad)?;
            if norms.len() != names.len() {
                return Err(bad());
            }
            Ok(GradNormRecord {
                step: step.as_u64().ok_or_else(bad)? as usize,
                norms: norms.iter().map(|n| number(n).ok_or_else(bad)).collect::<Result<_>>()?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(GradNormLog { names, records })
}
