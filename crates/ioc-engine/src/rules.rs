//! Dispatch rules as data (TOML): which unit kinds each category needs, the
//! priority a call of that category opens with, and the assignment deadline
//! of each priority. The defaults live in `default_rules.toml`.

use std::collections::BTreeMap;

use ioc_model::{Category, UnitKind};
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// What one category needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryRule {
    /// Priority an incident opened by a call of this category gets.
    pub priority: u8,
    /// How many units of each kind.
    pub needs: BTreeMap<UnitKind, u32>,
}

/// Assignment deadlines per priority, seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    pub p1: u64,
    pub p2: u64,
    pub p3: u64,
    pub p4: u64,
}

impl Deadlines {
    /// Deadline of a priority in milliseconds.
    pub fn millis(&self, priority: u8) -> i64 {
        let s = match priority {
            1 => self.p1,
            2 => self.p2,
            3 => self.p3,
            _ => self.p4,
        };
        i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// The whole rule table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchRules {
    pub categories: BTreeMap<Category, CategoryRule>,
    pub deadlines: Deadlines,
}

/// The rules shipped with the engine.
pub const DEFAULT_RULES_TOML: &str = include_str!("default_rules.toml");

impl Default for DispatchRules {
    fn default() -> Self {
        // The shipped file is tested below, so this cannot fail at run time.
        Self::from_toml(DEFAULT_RULES_TOML).unwrap_or_else(|_| DispatchRules {
            categories: BTreeMap::new(),
            deadlines: Deadlines {
                p1: 60,
                p2: 180,
                p3: 600,
                p4: 1800,
            },
        })
    }
}

impl DispatchRules {
    /// Parses and validates a rules file.
    pub fn from_toml(text: &str) -> Result<Self, EngineError> {
        let rules: DispatchRules =
            toml::from_str(text).map_err(|e| EngineError::Rules(e.to_string()))?;
        rules.validate()?;
        Ok(rules)
    }

    /// Every category must have a rule with a priority in 1..=4 and at
    /// least one unit.
    pub fn validate(&self) -> Result<(), EngineError> {
        for c in Category::ALL {
            let rule = self.categories.get(&c).ok_or_else(|| {
                EngineError::Rules(format!("no rule for category {}", c.as_str()))
            })?;
            if !(1..=4).contains(&rule.priority) {
                return Err(EngineError::Rules(format!(
                    "categories.{}.priority must be within 1..=4, got {}",
                    c.as_str(),
                    rule.priority
                )));
            }
            if rule.needs.values().all(|n| *n == 0) {
                return Err(EngineError::Rules(format!(
                    "categories.{} needs at least one unit",
                    c.as_str()
                )));
            }
        }
        Ok(())
    }

    /// The rule for a category (every category has one once validated).
    pub fn rule(&self, c: Category) -> CategoryRule {
        self.categories.get(&c).cloned().unwrap_or(CategoryRule {
            priority: 3,
            needs: BTreeMap::from([(UnitKind::Police, 1)]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_rules_parse_and_cover_every_category() {
        let rules = DispatchRules::from_toml(DEFAULT_RULES_TOML).unwrap();
        assert_eq!(rules.categories.len(), Category::ALL.len());
        let fire = rules.rule(Category::Fire);
        assert_eq!(fire.needs[&UnitKind::FireEngine], 2);
        assert_eq!(fire.needs[&UnitKind::Ambulance], 1);
        assert_eq!(rules.deadlines.millis(1), 60_000);
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let err = DispatchRules::from_toml("[categories.medical]\npriority = 9\nneeds = { ambulance = 1 }\n[deadlines]\np1=1\np2=1\np3=1\np4=1").unwrap_err();
        assert!(
            err.to_string().contains("no rule for category")
                || err.to_string().contains("priority"),
            "{err}"
        );
        let err =
            DispatchRules::from_toml("[categories.medical]\npriority = 2\nneeds = { tank = 1 }")
                .unwrap_err();
        assert!(err.to_string().contains("tank"), "{err}");
    }
}
