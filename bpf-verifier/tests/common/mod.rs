//! Shared test data.
#![allow(dead_code)]
pub mod corpus;
pub mod corpus2;
pub mod corpus_gen;
