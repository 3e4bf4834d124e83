//! The service's errors and the one helper that prints an error with its causes.

/// A failure that stops the service.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}")]
    Bind {
        /// `address:port`.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable (reported before anything runs).
    #[error("{0}")]
    Config(String),
    /// The store is misconfigured (not merely unreachable).
    #[error("cannot open the store")]
    Store(#[source] driftguard_store::Error),
}

/// `error: cause: cause…`, each cause once (a message that already quotes its source is not
/// repeated). Never carries more than the errors themselves say: the edges keep Secret values
/// and credentials out of their messages.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let error = ServeError::Bind {
            address: "127.0.0.1:8080".to_owned(),
            source: io,
        };
        assert_eq!(
            chain(&error),
            "cannot listen on 127.0.0.1:8080: address in use"
        );
    }
}
