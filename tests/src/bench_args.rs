//! The benches' command lines: `--name value` or `--name=value`; what a bench
//! does not know (cargo's own `--bench`, a filter) it skips.

use std::fmt::Display;
use std::str::FromStr;

use anyhow::Context as _;

/// The arguments after the program name, read option by option.
#[derive(Debug)]
pub struct BenchArgs {
    args: std::vec::IntoIter<String>,
    /// The value of the current option when given as `--name=value`.
    inline: Option<String>,
}

impl BenchArgs {
    /// This process's arguments.
    pub fn from_env() -> Self {
        Self {
            args: std::env::args().skip(1).collect::<Vec<_>>().into_iter(),
            inline: None,
        }
    }

    /// The next option's name; its value, if it takes one, is read with
    /// [`BenchArgs::value`].
    pub fn next_name(&mut self) -> Option<String> {
        self.inline = None;
        let arg = self.args.next()?;
        match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                self.inline = Some(value.to_owned());
                Some(name.to_owned())
            }
            _ => Some(arg),
        }
    }

    /// The value of the option `name` just read.
    ///
    /// # Errors
    /// The value is missing or does not parse.
    pub fn value<T: FromStr>(&mut self, name: &str) -> anyhow::Result<T>
    where
        T::Err: Display,
    {
        let value = self.inline.take().or_else(|| self.args.next());
        parse_value(name, value)
    }
}

/// Parses the value of `name` (an option or environment variable); numbers
/// may group their digits with `_`, as in `1_000_000`.
///
/// # Errors
/// The value is missing or does not parse.
pub fn parse_value<T: FromStr>(name: &str, value: Option<String>) -> anyhow::Result<T>
where
    T::Err: Display,
{
    let value = value.with_context(|| format!("{name} needs a value"))?;
    match value.parse() {
        Ok(parsed) => Ok(parsed),
        Err(error) => value
            .replace('_', "")
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} {value:?}: {error}")),
    }
}
