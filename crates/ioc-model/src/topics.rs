//! Topic names. Configurable; these defaults are the contract's.

use serde::{Deserialize, Serialize};

use crate::InputKind;

/// The Kafka topics the system reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    pub calls: String,
    pub incidents: String,
    pub positions: String,
    pub units: String,
    pub commands: String,
    pub events: String,
    pub dlq: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            calls: "ioc.calls".into(),
            incidents: "ioc.incidents".into(),
            positions: "ioc.positions".into(),
            units: "ioc.units".into(),
            commands: "ioc.commands".into(),
            events: "ioc.events".into(),
            dlq: "ioc.dlq".into(),
        }
    }
}

impl Topics {
    /// The topic an input kind is read from.
    pub fn input(&self, kind: InputKind) -> &str {
        match kind {
            InputKind::Call => &self.calls,
            InputKind::Incident => &self.incidents,
            InputKind::Position => &self.positions,
            InputKind::Unit => &self.units,
            InputKind::Command => &self.commands,
        }
    }

    /// The input kind a topic carries, if it is one of the five inputs.
    pub fn kind_of(&self, topic: &str) -> Option<InputKind> {
        InputKind::ALL.into_iter().find(|k| self.input(*k) == topic)
    }

    /// The five input topics.
    pub fn inputs(&self) -> Vec<&str> {
        InputKind::ALL.iter().map(|k| self.input(*k)).collect()
    }

    /// Every topic, inputs and outputs.
    pub fn all(&self) -> Vec<&str> {
        let mut all = self.inputs();
        all.push(&self.events);
        all.push(&self.dlq);
        all
    }
}
