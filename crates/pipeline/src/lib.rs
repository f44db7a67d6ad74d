//! What the Lambdas share.
