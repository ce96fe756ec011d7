//! A request's bad fields: [`FieldError`], and [`Invalid`], the error every
//! layer returns when a request breaks the rules (the HTTP layer answers 422).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The request breaks the rules: one entry per bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request has invalid fields")]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    /// One bad field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid(vec![FieldError::new(field, message)])
    }
}
