//! The ioap client SDK.
//!
//! Not implemented yet: this crate is a placeholder so that the workspace layout is fixed.
//! The client SDK issue builds it.
