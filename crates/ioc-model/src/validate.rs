//! Semantic checks that serde cannot express: coordinate ranges, id shapes,
//! text lengths. Every failure says what was expected and what came.

use crate::ValidationError;

/// Longest id we accept (call, incident, unit, command, alert ids).
pub const MAX_ID_LEN: usize = 128;
/// Longest free text (notes, descriptions) we accept.
pub const MAX_TEXT_LEN: usize = 4096;

/// A message that can check its own values after decoding.
pub trait Validate {
    /// `Ok` when every field is within the contract's ranges.
    fn validate(&self) -> Result<(), ValidationError>;
}

pub(crate) fn check_coord(what: &str, lat: f64, lon: f64) -> Result<(), ValidationError> {
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(ValidationError::new(format!(
            "{what}.lat must be within -90..=90, got {lat}"
        )));
    }
    if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
        return Err(ValidationError::new(format!(
            "{what}.lon must be within -180..=180, got {lon}"
        )));
    }
    Ok(())
}

pub(crate) fn check_id(what: &str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::new(format!("{what} must not be empty")));
    }
    if id.len() > MAX_ID_LEN {
        return Err(ValidationError::new(format!(
            "{what} must be at most {MAX_ID_LEN} bytes, got {}",
            id.len()
        )));
    }
    if id.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_opt_text(what: &str, text: Option<&str>) -> Result<(), ValidationError> {
    match text {
        Some(t) if t.len() > MAX_TEXT_LEN => Err(ValidationError::new(format!(
            "{what} must be at most {MAX_TEXT_LEN} bytes, got {}",
            t.len()
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn check_priority(p: u8) -> Result<(), ValidationError> {
    if (1..=4).contains(&p) {
        Ok(())
    } else {
        Err(ValidationError::new(format!(
            "priority must be within 1..=4, got {p}"
        )))
    }
}
