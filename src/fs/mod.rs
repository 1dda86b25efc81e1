//! The filesystem proper.
