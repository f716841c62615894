//! The CLI's one error type, and the one place library errors become it.
//!
//! A [`Failure`] is what the user sees and which exit code it earns: 2 when
//! the invocation is wrong or the command could not run, 1 when the input
//! was read but is wrong. Library crates have their own typed errors, which
//! say what went wrong in their terms; the mappings here add what the user
//! can do about it (which flag to change, which command makes the missing
//! file), since only the CLI knows its flags.

use bundle_tools::promote::PromoteError;
use bundle_tools::source::{LoadError, under};
use mcp_client::{HeaderError, Secrets, UrlError};
use std::fmt::Display;
use std::process::ExitCode;

/// A failure, and which exit code it earns.
#[derive(Debug)]
pub enum Failure {
    /// Exit 2: the invocation is wrong, or the command could not run. One
    /// line, printed after `portcullis: `.
    Usage(String),
    /// Exit 1: the input is wrong. One line per problem, printed as is;
    /// none when the command's output already said it (a diff with
    /// changes, a store that does not verify).
    Input(Vec<String>),
}

impl Failure {
    /// One line of wrong input.
    pub fn input(line: impl Into<String>) -> Failure {
        Failure::Input(vec![line.into()])
    }

    /// Exit 1, with nothing more to print.
    pub fn quiet() -> Failure {
        Failure::Input(Vec::new())
    }

    /// A command that could not run, named: `portcullis: audit: ...`.
    pub fn in_command(command: &str, e: impl Display) -> Failure {
        Failure::Usage(format!("{command}: {e}"))
    }

    /// Prints the failure to standard error; its exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Usage(line) => {
                eprintln!("portcullis: {line}");
                ExitCode::from(2)
            }
            Failure::Input(lines) => {
                for line in lines {
                    eprintln!("{line}");
                }
                ExitCode::from(1)
            }
        }
    }
}

/// A bundle that cannot be loaded: a missing directory is the invocation's
/// fault, compile errors the input's (each with its file under the
/// directory, then a count).
impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Failure {
        match &e {
            LoadError::Compile { dir, errors } => {
                let mut lines: Vec<String> = errors
                    .iter()
                    .map(|b| format!("error: {}", under(dir, b)))
                    .collect();
                lines.push(format!("portcullis: {e}"));
                Failure::Input(lines)
            }
            LoadError::NotCompiled { .. } => Failure::Usage(format!(
                "{e}; give a bundle directory or the output of `portcullis bundle build`"
            )),
            LoadError::NotADirectory(_) | LoadError::Read { .. } => Failure::Usage(e.to_string()),
        }
    }
}

/// `--url` that is not a plain-HTTP MCP endpoint.
impl From<UrlError> for Failure {
    fn from(e: UrlError) -> Failure {
        Failure::Usage(match e {
            UrlError::Invalid(why) => {
                format!("--url is not a URL ({why}); write it as http://HOST:PORT/PATH")
            }
            UrlError::Https => "--url is https://, but `portcullis pin` speaks plain HTTP only \
                                (the CLI carries no TLS stack): point it at the proxy's \
                                plain-HTTP listener, or at a port-forward to the server (e.g. \
                                `kubectl port-forward`), with http://"
                .into(),
            UrlError::NotHttp => {
                "--url must start with http:// (e.g. http://127.0.0.1:8000/mcp)".into()
            }
            UrlError::NoHost => "--url has no host".into(),
            UrlError::Credentials => {
                "--url carries credentials; pass them with --header instead".into()
            }
        })
    }
}

/// A `--header` flag that cannot be sent. Never quotes a value.
impl From<HeaderError> for Failure {
    fn from(e: HeaderError) -> Failure {
        Failure::Usage(match e {
            HeaderError::NoColon { number } => {
                format!("--header number {number} has no ':'; write it as 'Name: value'")
            }
            HeaderError::BadName { number } => format!(
                "--header number {number}: the part before ':' is not a header name; write it as 'Name: value'"
            ),
            HeaderError::Reserved { name } => {
                format!("--header {name}: `portcullis pin` sets this header itself")
            }
            HeaderError::BadValue { name } => format!(
                "--header {name}: the value is not a valid header value (visible ASCII and spaces)"
            ),
        })
    }
}

/// A failed session with a live server, scrubbed of header values, with
/// what to check or change.
pub fn exchange(e: &mcp_client::Error, secrets: &Secrets) -> Failure {
    use mcp_client::Error as E;
    let hint = match e {
        E::ProtocolVersion(_) => {
            return Failure::Usage(
                "--protocol-version must be a revision such as 2025-11-25".into(),
            );
        }
        E::Runtime(_) => return Failure::Usage(e.to_string()),
        E::Connect { .. } => "; is the server running, and is --url right?",
        E::Timeout { .. } => " (--timeout)",
        E::Status { status, .. } => match status.as_u16() {
            401 | 403 => "; pass credentials with --header 'Authorization: Bearer …'",
            404 | 405 => "; is --url the MCP endpoint (often /mcp)?",
            421 => "; the server refused the Host header (DNS-rebinding protection)",
            _ => "",
        },
        E::ContentType { .. } => "; is --url the MCP endpoint?",
        E::NoProtocolVersion => "; is --url an MCP server?",
        E::TooManyTools { .. } => "; refusing to pin them all",
        E::EndlessList { .. } => "; refusing to page on (a server whose list never ends)",
        E::Request(_) | E::Transport { .. } | E::Answer { .. } => "",
    };
    Failure::input(format!(
        "portcullis: {}",
        secrets.scrub(&format!("{e}{hint}"))
    ))
}

/// A promotion that cannot be planned.
impl From<PromoteError> for Failure {
    fn from(e: PromoteError) -> Failure {
        use PromoteError as P;
        match e {
            P::BadTarget(_) | P::SameEnvironment(_) | P::Read { .. } | P::Internal(_) => {
                Failure::Usage(match e {
                    P::SameEnvironment(env) => format!("--from and --to are both {env}"),
                    e => e.to_string(),
                })
            }
            P::NoDefaultSource { to } => Failure::Usage(format!(
                "--to {to}: no default --from for it (the order is dev → staging → prod); pass --from ENV"
            )),
            P::FirstEnvironment { .. } => Failure::Usage(format!("--to {e}")),
            P::NotADirectory(dir) => Failure::Usage(format!(
                "{} is not a directory; --bundles holds one bundle directory per environment",
                dir.display()
            )),
            P::WouldBreak {
                ref to_dir,
                ref errors,
                ..
            } => {
                let mut lines: Vec<String> = errors
                    .iter()
                    .map(|b| format!("error: {}/{b}", to_dir.display()))
                    .collect();
                lines.push(format!("portcullis: {e}; nothing written"));
                Failure::Input(lines)
            }
            P::DefinedTwice { .. }
            | P::Missing { .. }
            | P::WrongVersion { .. }
            | P::NameTaken { .. } => Failure::input(format!("portcullis: {e}")),
        }
    }
}
