//! Product profiles and decoration.
