//! The ioap rendezvous gateway.
//!
//! Not implemented yet: this crate is a placeholder so that the workspace layout is fixed.
//! The gateway issue builds it.
