//! What gateways of a cluster tell each other over their Redis channels: plain text, one
//! field per line, the relayed frame last (it is JSON and may hold newlines).

/// A message on a node's channel (`ioap:bus:{node}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage<'a> {
    /// A frame for an agent registered on the receiving node: its original bytes.
    Relay {
        /// The receiver (canonical DID text).
        to: &'a str,
        /// The node the sender is registered on (where a bounce goes).
        from_node: &'a str,
        /// The sender.
        from: &'a str,
        /// The frame's id (to correlate a bounce).
        id: &'a str,
        /// The frame's type, e.g. `OFFER`.
        ty: &'a str,
        /// The frame.
        frame: &'a str,
    },
    /// A relay the receiving node could not deliver, back to the sender's node.
    Bounce {
        /// The original sender, who gets the ERROR.
        to: &'a str,
        /// The receiver that could not be reached.
        about: &'a str,
        /// The refused frame's id.
        id: &'a str,
        /// Its type.
        ty: &'a str,
        /// UNKNOWN_AGENT or RECEIVER_BUSY.
        code: &'a str,
    },
    /// A newer session registered `did` on another node: session `session` here must close
    /// with SESSION_REPLACED.
    Replace {
        /// The DID.
        did: &'a str,
        /// The replaced session's id on the receiving node.
        session: u64,
    },
}

impl<'a> BusMessage<'a> {
    /// The text published.
    pub fn encode(&self) -> String {
        match self {
            BusMessage::Relay {
                to,
                from_node,
                from,
                id,
                ty,
                frame,
            } => format!("relay\n{to}\n{from_node}\n{from}\n{id}\n{ty}\n{frame}"),
            BusMessage::Bounce {
                to,
                about,
                id,
                ty,
                code,
            } => format!("bounce\n{to}\n{about}\n{id}\n{ty}\n{code}"),
            BusMessage::Replace { did, session } => format!("replace\n{did}\n{session}"),
        }
    }

    /// Reads a published text; `None` if it is not one of ours.
    pub fn decode(text: &'a str) -> Option<Self> {
        let (kind, rest) = text.split_once('\n')?;
        match kind {
            "relay" => {
                let mut fields = rest.splitn(6, '\n');
                Some(BusMessage::Relay {
                    to: fields.next()?,
                    from_node: fields.next()?,
                    from: fields.next()?,
                    id: fields.next()?,
                    ty: fields.next()?,
                    frame: fields.next()?,
                })
            }
            "bounce" => {
                let mut fields = rest.split('\n');
                let message = BusMessage::Bounce {
                    to: fields.next()?,
                    about: fields.next()?,
                    id: fields.next()?,
                    ty: fields.next()?,
                    code: fields.next()?,
                };
                fields.next().is_none().then_some(message)
            }
            "replace" => {
                let (did, session) = rest.split_once('\n')?;
                Some(BusMessage::Replace {
                    did,
                    session: session.parse().ok()?,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_and_a_frame_may_hold_newlines() {
        let messages = [
            BusMessage::Relay {
                to: "did:key:z6MkA",
                from_node: "n1",
                from: "did:key:z6MkB",
                id: "0123",
                ty: "OFFER",
                frame: "{\n \"type\": \"OFFER\"\n}",
            },
            BusMessage::Bounce {
                to: "did:key:z6MkB",
                about: "did:key:z6MkA",
                id: "0123",
                ty: "OFFER",
                code: "RECEIVER_BUSY",
            },
            BusMessage::Replace {
                did: "did:key:z6MkA",
                session: 42,
            },
        ];
        for message in messages {
            let text = message.encode();
            assert_eq!(BusMessage::decode(&text), Some(message));
        }
    }

    #[test]
    fn foreign_or_truncated_text_is_not_a_message() {
        for text in [
            "",
            "hello",
            "relay\nto\nnode",
            "bounce\na\nb\nc\nd",
            "bounce\na\nb\nc\nd\ne\nextra",
            "replace\ndid\nnot-a-number",
        ] {
            assert_eq!(BusMessage::decode(text), None, "{text:?}");
        }
    }
}
