//! Open-file limits: raise the soft limit to the hard one, and say plainly when a run will
//! not fit.

use anyhow::Context;

/// Descriptors per agent: its WebSocket.
const FILES_PER_AGENT: u64 = 1;
/// Descriptors per agent on an embedded gateway: the gateway's end of the WebSocket.
const FILES_PER_EMBEDDED_AGENT: u64 = 1;
/// Descriptors per link, both ends (measured: one UDP socket per peer connection).
const FILES_PER_LINK: u64 = 2;
/// Descriptors for everything else (runtime, listener, stdio, the directory's HTTP).
const FILES_SPARE: u64 = 256;

/// How many descriptors a run needs, about.
pub fn needed(agents: usize, links: usize, embedded: bool) -> u64 {
    agents as u64 * per_agent(embedded) + links as u64 * FILES_PER_LINK + FILES_SPARE
}

fn per_agent(embedded: bool) -> u64 {
    FILES_PER_AGENT
        + if embedded {
            FILES_PER_EMBEDDED_AGENT
        } else {
            0
        }
}

/// The most agents that fit under `limit` with `links` links.
pub fn agents_within(limit: u64, links: usize, embedded: bool) -> u64 {
    limit.saturating_sub(FILES_SPARE + links as u64 * FILES_PER_LINK) / per_agent(embedded)
}

/// Raises the soft open-file limit to the hard limit; fails with advice when the run needs
/// more. Returns the limit now in force.
pub fn ensure(agents: usize, links: usize, embedded: bool) -> anyhow::Result<u64> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .context("cannot read or raise the open-file limit")?;
    check(limit, agents, links, embedded)?;
    Ok(limit)
}

fn check(limit: u64, agents: usize, links: usize, embedded: bool) -> anyhow::Result<()> {
    let needed = needed(agents, links, embedded);
    if limit >= needed {
        return Ok(());
    }
    let fit = agents_within(limit, links, embedded);
    let embedded_note = if embedded {
        "; the embedded gateway holds the other end of every WebSocket — a gateway in its own \
         process (--gateway URL) halves this"
    } else {
        ""
    };
    anyhow::bail!(
        "the open-file limit is {limit} (the hard limit; the soft one was raised to it), but \
         {agents} agents and {links} links need about {needed}{embedded_note}. With this limit \
         at most {fit} agents fit with --links {links}. Raise the hard limit (as root: `ulimit \
         -Hn 1048576`, or LimitNOFILE= for a systemd unit) or ask for fewer agents."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_fits_passes_and_one_that_does_not_says_how_many_fit() {
        assert!(check(20_000, 9_000, 0, true).is_ok());
        let error = check(20_000, 10_000, 0, true)
            .expect_err("too many")
            .to_string();
        assert!(error.contains("at most 9872 agents"), "{error}");
        assert!(error.contains("--gateway URL"), "{error}");
        assert!(check(20_000, 10_000, 0, false).is_ok());
    }

    #[test]
    fn links_take_their_share() {
        assert_eq!(needed(10, 5, false), 10 + 10 + 256);
        assert_eq!(agents_within(1000, 100, false), 1000 - 256 - 200);
        assert_eq!(agents_within(300, 100, true), 0);
    }

    #[test]
    fn the_soft_limit_is_raised() {
        let limit = ensure(1, 0, true).expect("a tiny run fits");
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("readable");
        assert_eq!(limit, soft);
        assert_eq!(soft, hard);
    }
}
