//! What became of a job on a node, as the client gets it in a reply: pp-runtime's
//! [`Outcome`], the one type the worker, the node and the client share (its making from a
//! worker's report is in the `pipe` module).

pub use pp_runtime::Outcome;
