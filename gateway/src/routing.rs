//! What a registered session's frame asks of the gateway (PROTOCOL_DESIGN.md §10), as a plain
//! function of the frame and the session: no sockets, no registry.

use ioap_protocol::{
    Body, DecodeError, Did, ErrorCode, FrameHeader, MessageId, MessageType, ReceivedEnvelope,
};

/// The gateway's decision about one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a short-lived value on the stack, made once per frame; boxing would allocate per relay"
)]
pub enum Action {
    /// Forward the frame's original bytes to `to`.
    Relay {
        /// The receiver.
        to: Did,
        /// The frame's type (for metrics).
        ty: MessageType,
        /// The frame's id.
        id: MessageId,
        /// What an ERROR about the frame (UNKNOWN_AGENT, RECEIVER_BUSY, …) correlates to:
        /// the frame's id, or for the records of a gateway-relayed link the link's id
        /// (PROTOCOL_DESIGN.md §11.5).
        answer_to: MessageId,
    },
    /// Answer a PING addressed to the gateway.
    Pong {
        /// The PING's id.
        id: MessageId,
        /// Its sequence.
        sequence: u64,
    },
    /// Remove the agent and close normally.
    Unregister,
    /// Answer with ERROR and drop the frame.
    Reject {
        /// The error code.
        code: ErrorCode,
        /// The explanation.
        message: String,
        /// The refused frame's id, if it could be read.
        id: Option<MessageId>,
    },
    /// Nothing to do (an ERROR or PONG addressed to the gateway).
    Ignore,
}

/// Who the session is and how strict the gateway is.
#[derive(Clone, Copy)]
pub struct SessionView<'a> {
    /// The DID the session registered as.
    pub agent: &'a Did,
    /// Its canonical text.
    pub agent_text: &'a str,
    /// Resolves DIDs already known to be valid (the registry), to skip re-validating them.
    pub known: &'a dyn Fn(&str) -> Option<Did>,
    /// The gateway's DID.
    pub gateway: &'a Did,
    /// Whether relayed frames' signatures are checked.
    pub verify_relayed: bool,
    /// Whether gateway-relayed links (the RELAY_* types) are offered.
    pub relay_offered: bool,
}

/// Whether `ty` belongs to a gateway-relayed link (PROTOCOL_DESIGN.md §11.5).
pub fn is_relay_type(ty: MessageType) -> bool {
    matches!(
        ty,
        MessageType::RelayOpen
            | MessageType::RelayAccept
            | MessageType::RelayData
            | MessageType::RelayClose
    )
}

/// Decides what to do with a text frame from a registered session.
///
/// Frames to relay are read only as far as [`FrameHeader`] reads them (the receiver decodes
/// the payload and verifies end to end); what the gateway acts on itself is decoded in full.
pub fn route(frame: &str, session: SessionView<'_>) -> Action {
    let resolve = |text: &str| {
        if text == session.agent_text {
            Some(*session.agent)
        } else {
            (session.known)(text)
        }
    };
    let header = match FrameHeader::decode_with(frame.as_bytes(), resolve) {
        Ok(header) => header,
        Err(error) => return refuse(error),
    };
    let reject = |code, message: String| Action::Reject {
        code,
        message,
        id: Some(header.id),
    };
    if header.from != *session.agent {
        return reject(
            ErrorCode::SenderMismatch,
            "\"from\" is not the DID this session registered as".into(),
        );
    }
    let ty = header.ty;
    let Some(to) = header.to else {
        // Only an ERROR may omit "to"; an agent's ERROR to nobody in particular is noted.
        return Action::Ignore;
    };
    if to == *session.gateway {
        return addressed_to_gateway(frame, resolve);
    }
    if to == *session.agent {
        return reject(
            ErrorCode::NotRelayed,
            "an agent does not signal itself".into(),
        );
    }
    let signaling = matches!(
        ty,
        MessageType::Offer | MessageType::Answer | MessageType::IceCandidate
    );
    let relayed_link = is_relay_type(ty);
    if relayed_link && !session.relay_offered {
        let id = if ty == MessageType::RelayOpen {
            header.id
        } else {
            header.correlation_id.unwrap_or(header.id)
        };
        return Action::Reject {
            code: ErrorCode::NotRelayed,
            message: "this gateway does not offer gateway relay (PROTOCOL_DESIGN.md §11.5)".into(),
            id: Some(id),
        };
    }
    if !signaling && !relayed_link {
        return reject(
            ErrorCode::NotRelayed,
            format!("the gateway relays only OFFER, ANSWER and ICE_CANDIDATE, not {ty}"),
        );
    }
    if session.verify_relayed {
        match ReceivedEnvelope::decode_with(frame.as_bytes(), resolve) {
            Err(error) => return refuse(error),
            Ok(received) if received.verify().is_err() => {
                return reject(ErrorCode::InvalidSignature, BAD_SIGNATURE.into());
            }
            Ok(_) => {}
        }
    }
    let answer_to = match (relayed_link, ty) {
        (true, MessageType::RelayOpen) | (false, _) => header.id,
        (true, _) => header.correlation_id.unwrap_or(header.id),
    };
    Action::Relay {
        to,
        ty,
        id: header.id,
        answer_to,
    }
}

const BAD_SIGNATURE: &str = "signature does not verify";

fn refuse(error: DecodeError) -> Action {
    Action::Reject {
        code: error.code(),
        message: error.to_string(),
        id: error.id,
    }
}

/// A frame addressed to the gateway, decoded in full; PING and UNREGISTER are verified
/// before they are acted on (§5.2).
fn addressed_to_gateway(frame: &str, resolve: impl Fn(&str) -> Option<Did>) -> Action {
    let received = match ReceivedEnvelope::decode_with(frame.as_bytes(), resolve) {
        Ok(received) => received,
        Err(error) => return refuse(error),
    };
    let envelope = received.envelope();
    let reject = |code, message: String| Action::Reject {
        code,
        message,
        id: Some(envelope.id),
    };
    let acts = matches!(envelope.body, Body::Ping(_) | Body::Unregister(_));
    if acts && received.verify().is_err() {
        return reject(ErrorCode::InvalidSignature, BAD_SIGNATURE.into());
    }
    match &envelope.body {
        Body::Ping(ping) => Action::Pong {
            id: envelope.id,
            sequence: ping.sequence,
        },
        Body::Unregister(_) => Action::Unregister,
        Body::Register(_) => reject(
            ErrorCode::AlreadyRegistered,
            "this session is already registered".into(),
        ),
        Body::Pong(_) | Body::Error(_) => Action::Ignore,
        _ => reject(
            ErrorCode::NotRelayed,
            format!("the gateway does not handle {}", envelope.message_type()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioap_protocol::payload::{Ping, SessionDescription, Unregister};
    use ioap_protocol::samples::{alice, bob, example_time, gateway};
    use ioap_protocol::{Envelope, Identity, signing};

    struct Fixture {
        agent: Did,
        text: String,
        gateway: Did,
    }

    impl Fixture {
        fn new(agent: Did) -> Self {
            Fixture {
                agent,
                text: agent.to_string(),
                gateway: gateway().did(),
            }
        }

        fn view(&self, verify_relayed: bool) -> SessionView<'_> {
            SessionView {
                agent: &self.agent,
                agent_text: &self.text,
                known: &|_| None,
                gateway: &self.gateway,
                verify_relayed,
                relay_offered: true,
            }
        }
    }

    fn signed(signer: &Identity, to: Did, body: Body) -> String {
        Envelope::new(signer.did(), Some(to), body, example_time())
            .sign(signer)
            .expect("sign")
            .into_string()
    }

    fn offer() -> Body {
        Body::Offer(SessionDescription { sdp: "v=0".into() })
    }

    #[test]
    fn signaling_to_another_agent_is_relayed() {
        let f = Fixture::new(alice().did());
        let frame = signed(&alice(), bob().did(), offer());
        assert!(matches!(
            route(&frame, f.view(false)),
            Action::Relay { to, ty: MessageType::Offer, .. } if to == bob().did()
        ));
    }

    #[test]
    fn a_spoofed_sender_is_rejected() {
        let f = Fixture::new(bob().did());
        let frame = signed(&alice(), gateway().did(), offer());
        assert!(matches!(
            route(&frame, f.view(false)),
            Action::Reject {
                code: ErrorCode::SenderMismatch,
                id: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn ping_and_unregister_to_the_gateway() {
        let f = Fixture::new(alice().did());
        let ping = signed(&alice(), f.gateway, Body::Ping(Ping { sequence: 9 }));
        assert!(matches!(
            route(&ping, f.view(false)),
            Action::Pong { sequence: 9, .. }
        ));
        let bye = signed(&alice(), f.gateway, Body::Unregister(Unregister::default()));
        assert_eq!(route(&bye, f.view(false)), Action::Unregister);
    }

    #[test]
    fn ping_and_unregister_with_a_bad_signature_are_refused() {
        let f = Fixture::new(alice().did());
        let bad_signature = |frame: String| {
            // Another valid-looking signature: the one of a different message.
            let other = signed(&alice(), f.gateway, Body::Ping(Ping { sequence: 1 }));
            let sig = |text: &str| {
                let at = text.find("\"signature\":\"").expect("signature") + 13;
                text[at..at + 86].to_owned()
            };
            frame.replace(&sig(&frame), &sig(&other))
        };
        let ping = signed(&alice(), f.gateway, Body::Ping(Ping { sequence: 9 }));
        let bye = signed(&alice(), f.gateway, Body::Unregister(Unregister::default()));
        for frame in [bad_signature(ping), bad_signature(bye)] {
            assert!(matches!(
                route(&frame, f.view(false)),
                Action::Reject {
                    code: ErrorCode::InvalidSignature,
                    id: Some(_),
                    ..
                }
            ));
        }
    }

    #[test]
    fn a_ping_signed_with_the_registration_tag_is_refused() {
        let f = Fixture::new(alice().did());
        let envelope = Envelope::new(
            alice().did(),
            Some(f.gateway),
            Body::Ping(Ping { sequence: 3 }),
            example_time(),
        );
        let mut object = envelope.unsigned_object();
        let canonical = signing::canonicalize_object(&object);
        let signature = signing::sign(&alice(), signing::Purpose::Registration, &canonical);
        object.insert(
            "signature".into(),
            signing::encode_signature(&signature).into(),
        );
        let frame = serde_json::to_string(&object).expect("json");
        assert!(matches!(
            route(&frame, f.view(false)),
            Action::Reject {
                code: ErrorCode::InvalidSignature,
                ..
            }
        ));
    }

    #[test]
    fn signaling_to_oneself_is_not_relayed() {
        let f = Fixture::new(alice().did());
        let frame = signed(&alice(), alice().did(), offer());
        assert!(matches!(
            route(&frame, f.view(false)),
            Action::Reject {
                code: ErrorCode::NotRelayed,
                id: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn application_messages_are_not_relayed() {
        let f = Fixture::new(alice().did());
        let frame = signed(&alice(), bob().did(), Body::Ping(Ping { sequence: 1 }));
        assert!(matches!(
            route(&frame, f.view(false)),
            Action::Reject {
                code: ErrorCode::NotRelayed,
                ..
            }
        ));
    }

    #[test]
    fn malformed_frames_get_their_decode_code() {
        let f = Fixture::new(alice().did());
        assert!(matches!(
            route("{nope", f.view(false)),
            Action::Reject {
                code: ErrorCode::MalformedMessage,
                id: None,
                ..
            }
        ));
    }

    #[test]
    fn verify_relayed_catches_a_bad_signature() {
        let f = Fixture::new(alice().did());
        let frame = signed(&alice(), bob().did(), offer()).replace("v=0", "v=1");
        assert!(matches!(route(&frame, f.view(false)), Action::Relay { .. }));
        assert!(matches!(
            route(&frame, f.view(true)),
            Action::Reject {
                code: ErrorCode::InvalidSignature,
                ..
            }
        ));
    }

    #[test]
    fn a_relayed_payload_is_left_to_the_receiver_unless_verifying() {
        let f = Fixture::new(alice().did());
        let frame = signed(&alice(), bob().did(), offer()).replace("\"v=0\"", "5");
        assert!(matches!(route(&frame, f.view(false)), Action::Relay { .. }));
        assert!(matches!(
            route(&frame, f.view(true)),
            Action::Reject {
                code: ErrorCode::MalformedMessage,
                ..
            }
        ));
    }

    #[test]
    fn a_relayed_frame_still_needs_a_whole_envelope() {
        let f = Fixture::new(alice().did());
        let frame = signed(&alice(), bob().did(), offer())
            .replace("\"version\":\"1.0\"", "\"version\":\"2.0\"");
        assert!(matches!(
            route(&frame, f.view(false)),
            Action::Reject {
                code: ErrorCode::UnsupportedVersion,
                id: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn relayed_link_records_are_relayed_and_errors_name_the_link() {
        let f = Fixture::new(alice().did());
        let open = ioap_protocol::samples::example_envelope(MessageType::RelayOpen).1;
        let frame = open.sign(&alice()).expect("sign").into_string();
        assert!(matches!(
            route(&frame, f.view(false)),
            Action::Relay { ty: MessageType::RelayOpen, id, answer_to, .. } if id == answer_to
        ));
        let (_, mut data) = ioap_protocol::samples::example_envelope(MessageType::RelayData);
        let link = MessageId::random();
        data.correlation_id = Some(link);
        let frame = data.sign(&alice()).expect("sign").into_string();
        assert!(matches!(
            route(&frame, f.view(false)),
            Action::Relay { ty: MessageType::RelayData, answer_to, .. } if answer_to == link
        ));
        let off = SessionView {
            relay_offered: false,
            ..f.view(false)
        };
        assert!(matches!(
            route(&frame, off),
            Action::Reject { code: ErrorCode::NotRelayed, id: Some(id), .. } if id == link
        ));
        // Signaling is relayed whether or not relay is offered.
        let offer = signed(&alice(), bob().did(), offer());
        assert!(matches!(route(&offer, off), Action::Relay { .. }));
    }
}
