//! One module per subcommand; the doc comment of each argument struct is its
//! help text.

pub mod status;
