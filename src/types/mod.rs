//! Value types shared across domains. Raw input becomes one of these at the edge (parse, don't
//! validate), so code behind the edge never re-checks it.

mod email;

pub use email::Email;
