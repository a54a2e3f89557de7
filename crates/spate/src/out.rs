//! Writing to stdout and stderr without panicking when the reader has gone away.
//!
//! `println!` panics when stdout is a closed pipe (`spate info T | head -1`: exit code 101
//! and a panic message). spate instead ends quietly with exit code 0 when stdout is gone, as
//! ripgrep, fd and bat do: the reader has all it asked for, and there is nobody left to tell.
//! (Other write errors on stdout, e.g. a full disk under `> file`, are said once on stderr
//! and exit with code 1.) Lines to stderr are best effort: an error writing them is ignored.

use std::io::Write;

/// What happened to a line written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Ok,
    /// The reader closed the pipe: stop producing output.
    Gone,
}

/// Writes one line to stdout; `Gone` when the reader has closed the pipe. Any other write
/// error ends the process with exit code 1 and one line on stderr.
pub fn try_stdout_line(args: std::fmt::Arguments<'_>) -> Written {
    let mut o = std::io::stdout().lock();
    let r = o
        .write_fmt(args)
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush());
    match r {
        Ok(()) => Written::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Written::Gone,
        Err(e) => {
            stderr_line(format_args!("spate: cannot write to stdout: {e}"));
            std::process::exit(1)
        }
    }
}

/// Writes one line to stdout; ends the process quietly (exit code 0) when the reader has
/// closed the pipe.
pub fn stdout_line(args: std::fmt::Arguments<'_>) {
    if try_stdout_line(args) == Written::Gone {
        std::process::exit(0)
    }
}

/// Writes one line to stderr, ignoring errors.
pub fn stderr_line(args: std::fmt::Arguments<'_>) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_fmt(args).and_then(|()| e.write_all(b"\n"));
}

/// Whether log lines and progress bars may use colours: stderr is a terminal and
/// `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn color_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `println!` that never panics: see [`stdout_line`].
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::out::stdout_line(format_args!($($t)*))
    };
}

/// `eprintln!` that never panics: see [`stderr_line`].
macro_rules! errln {
    ($($t:tt)*) => {
        $crate::out::stderr_line(format_args!($($t)*))
    };
}
