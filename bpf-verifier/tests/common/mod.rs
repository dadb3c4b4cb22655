//! Shared test data.
pub mod corpus;
