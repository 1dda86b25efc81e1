//! The thin fuser adapter.
