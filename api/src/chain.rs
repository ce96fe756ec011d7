//! One line for an error and its causes (`what failed: why: why deeper`),
//! for logs, a failed database's phase and the start-up line. A leaf:
//! every layer that reports an error uses it.

/// `e` and each of its sources, joined by `": "`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_follow_the_error() {
        let e = crate::config::SettingError {
            var: "PGPLANE_X",
            reason: "bad".into(),
        };
        assert_eq!(super::chain(&e), "bad setting PGPLANE_X: bad");
        let io = std::io::Error::other("disk on fire");
        let wrapped = crate::records::journal::WriteError {
            path: "/x".into(),
            cause: std::sync::Arc::new(io),
        };
        assert_eq!(super::chain(&wrapped), "cannot write to /x: disk on fire");
    }
}
