//! Pipelines: a route through registered handlers, each stage's response being the next
//! stage's payload. Registration flattens nested pipelines here; `dispatch.rs` moves a request
//! from stage to stage.

use std::sync::Arc;

use super::Engine;
use super::registry::{HandlerEntry, HandlerKind};
use super::types::MAX_PIPELINE_STAGES;
use crate::error::{Error, Result};

impl Engine {
    /// Registers a pipeline running `stages` in order; nested pipelines are flattened.
    pub fn register_pipeline(&self, name: &str, stages: &[u32]) -> Result<u32> {
        self.check_registration()?;
        if stages.is_empty() {
            return Err(Error::invalid("a pipeline needs at least one stage"));
        }
        let mut flat: Vec<Arc<HandlerEntry>> = Vec::new();
        for &id in stages {
            let entry = self.shared.registry.get(id)?;
            match &entry.kind {
                HandlerKind::Pipeline(inner) => flat.extend(inner.iter().cloned()),
                _ => flat.push(entry),
            }
        }
        if flat.len() > MAX_PIPELINE_STAGES {
            return Err(Error::invalid(format!(
                "a pipeline may have at most {MAX_PIPELINE_STAGES} stages, got {}",
                flat.len()
            )));
        }
        self.shared
            .registry
            .register(name, HandlerKind::Pipeline(flat))
    }
}
