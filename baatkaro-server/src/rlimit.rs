//! Fitting the connection limit to the file descriptors the process may open.
//!
//! Every connection is a descriptor. A server allowed more connections than
//! descriptors does not refuse the extra ones with `BYE TOO_MANY_CONNECTIONS`
//! (that needs a descriptor too): accept fails, and they wait in the listen
//! backlog. So at start the soft `RLIMIT_NOFILE` is raised to the hard limit, and
//! if `max_connections` still does not fit beside [`RESERVE`], it is lowered, with
//! a warning that says both numbers.

/// Descriptors kept for everything but client connections: 16 for the process
/// itself (standard streams, the listener and its spare, the database with its
/// WAL and shared-memory files, the data directory's lock, the runtime's and the
/// signal handlers'), 64 for unfinished uploads kept open between chunks (the
/// most the server keeps), and 48 for files being read or written at one moment
/// (a download streaming, an upload checked against its SHA-256). Downloads
/// streaming at once beyond that share the leftovers of the connection limit;
/// a file that cannot be opened fails that one request, not the server.
pub const RESERVE: u64 = 128;

/// What fitting found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fitted {
    /// The soft limit on open descriptors in force after raising it (`None`: no
    /// limit).
    pub descriptors: Option<u64>,
    /// `max_connections` as it must be now: as configured if it fits.
    pub max_connections: usize,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, then fits `max_connections`
/// with [`RESERVE`] under it. Logs a warning when the limit cannot be raised and
/// when `max_connections` is lowered; at least one connection stays allowed.
#[cfg(unix)]
pub fn fit(max_connections: usize) -> Fitted {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current;
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = limit.maximum,
            Err(e) => tracing::warn!(
                error = %e,
                soft = ?limit.current,
                hard = ?limit.maximum,
                "cannot raise the soft limit on open files (RLIMIT_NOFILE) to the hard limit"
            ),
        }
    }
    Fitted { descriptors: soft, max_connections: fit_within(soft, max_connections) }
}

/// Without Unix resource limits there is nothing to fit.
#[cfg(not(unix))]
pub fn fit(max_connections: usize) -> Fitted {
    Fitted { descriptors: None, max_connections }
}

/// `max_connections`, lowered (with a warning) to what `descriptors` leaves
/// beside [`RESERVE`].
fn fit_within(descriptors: Option<u64>, max_connections: usize) -> usize {
    let Some(descriptors) = descriptors else { return max_connections };
    let room = usize::try_from(descriptors.saturating_sub(RESERVE)).unwrap_or(usize::MAX).max(1);
    if max_connections <= room {
        return max_connections;
    }
    tracing::warn!(
        "max_connections lowered from {max_connections} to {room}: the limit on open files \
         (RLIMIT_NOFILE) is {descriptors}, and {RESERVE} are kept for the store, files and \
         the listener; raise the hard limit (ulimit -Hn, LimitNOFILE= in systemd) to allow more"
    );
    room
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_lowered_only_when_they_do_not_fit() {
        assert_eq!(fit_within(None, 10_000), 10_000);
        assert_eq!(fit_within(Some(1 << 20), 10_000), 10_000);
        assert_eq!(fit_within(Some(10_000 + RESERVE), 10_000), 10_000);
        assert_eq!(fit_within(Some(10_000 + RESERVE - 1), 10_000), 9_999);
        assert_eq!(fit_within(Some(1024), 10_000), 1024 - RESERVE as usize);
        // Too few descriptors for the reserve still leaves one connection.
        assert_eq!(fit_within(Some(64), 10_000), 1);
        assert_eq!(fit_within(Some(0), 10_000), 1);
    }

    #[test]
    fn fitting_raises_the_soft_limit_to_the_hard_one() {
        use rustix::process::{Resource, getrlimit};
        let fitted = fit(usize::MAX);
        let now = getrlimit(Resource::Nofile);
        assert_eq!(fitted.descriptors, now.current);
        // Raising is allowed to fail only where the hard limit is infinite
        // (Linux refuses an infinite descriptor limit).
        if now.maximum.is_some() {
            assert_eq!(now.current, now.maximum);
        }
        assert!(fitted.max_connections < usize::MAX || now.current.is_none());
    }
}
