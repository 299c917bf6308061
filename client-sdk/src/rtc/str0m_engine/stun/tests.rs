use super::*;

/// RFC 5769 §2.2, "Sample IPv4 Response": XOR-MAPPED-ADDRESS 192.0.2.1:32853 after a
/// SOFTWARE attribute, followed by MESSAGE-INTEGRITY and FINGERPRINT.
const RFC5769_IPV4_RESPONSE: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae\
    8022000b7465737420766563746f7220\
    002000080001a147e112a643\
    000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
    80280004c07d4c96";
const RFC5769_ID: TransactionId = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn the_rfc_5769_response_gives_its_mapped_address() {
    let response = hex(RFC5769_IPV4_RESPONSE);
    assert_eq!(
        binding_success(&response, &RFC5769_ID),
        Some("192.0.2.1:32853".parse().expect("addr"))
    );
}

#[test]
fn a_response_to_another_transaction_or_a_request_is_not_an_answer() {
    let response = hex(RFC5769_IPV4_RESPONSE);
    let mut other = RFC5769_ID;
    other[0] ^= 1;
    assert_eq!(binding_success(&response, &other), None);
    assert_eq!(
        binding_success(&binding_request(RFC5769_ID), &RFC5769_ID),
        None
    );
    assert_eq!(binding_success(&response[..19], &RFC5769_ID), None);
}

#[test]
fn truncated_attributes_are_not_read_past_the_datagram() {
    let mut response = hex(RFC5769_IPV4_RESPONSE);
    response.truncate(20 + 16 + 6);
    assert_eq!(binding_success(&response, &RFC5769_ID), None);
}

#[test]
fn a_binding_request_is_twenty_bytes_with_the_cookie_and_id() {
    let request = binding_request(RFC5769_ID);
    assert!(is_stun(&request));
    assert_eq!(&request[..4], &[0, 1, 0, 0]);
    assert_eq!(&request[8..], &RFC5769_ID);
    assert!(!is_stun(&[0x16; 40]), "a DTLS record is not STUN");
}

fn check_with_username(username: &str) -> Vec<u8> {
    let mut attr = vec![0x00, 0x06, 0x00, username.len() as u8];
    attr.extend_from_slice(username.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let mut message = binding_request(RFC5769_ID).to_vec();
    message[2..4].copy_from_slice(&(attr.len() as u16).to_be_bytes());
    message.extend_from_slice(&attr);
    message
}

#[test]
fn a_check_names_this_sides_fragment_first() {
    assert_eq!(
        check_username(&check_with_username("abcd:efgh")),
        Some("abcd")
    );
    assert_eq!(check_username(&check_with_username("solo")), Some("solo"));
    assert_eq!(check_username(&binding_request(RFC5769_ID)), None);
    assert_eq!(check_username(&hex(RFC5769_IPV4_RESPONSE)), None);
}

#[test]
fn a_probe_retransmits_then_gives_up_in_virtual_time() {
    let start = Instant::now();
    let server = "192.0.2.9:3478".parse().expect("addr");
    let mut probe = SrflxProbe::new(server, RFC5769_ID, start);
    let mut sent_at = Vec::new();
    let mut now = start;
    while let Some(deadline) = probe.deadline() {
        now = deadline;
        if probe.poll_transmit(now).is_some() {
            sent_at.push(now - start);
        }
    }
    let ms = |m| Duration::from_millis(m);
    assert_eq!(sent_at, vec![ms(0), ms(250), ms(750), ms(1750)]);
    assert!(probe.is_done());
    assert_eq!(
        now - start,
        ms(3750),
        "gives up one doubled wait after the last"
    );
}

#[test]
fn a_probe_takes_only_its_servers_answer_once() {
    let now = Instant::now();
    let server = "192.0.2.9:3478".parse().expect("addr");
    let mut probe = SrflxProbe::new(server, RFC5769_ID, now);
    assert!(probe.poll_transmit(now).is_some());
    let response = hex(RFC5769_IPV4_RESPONSE);
    let stranger = "192.0.2.10:3478".parse().expect("addr");
    assert_eq!(probe.handle(stranger, &response), None);
    assert_eq!(
        probe.handle(server, &response),
        Some("192.0.2.1:32853".parse().expect("addr"))
    );
    assert!(probe.is_done());
    assert_eq!(probe.handle(server, &response), None, "once");
    assert_eq!(probe.poll_transmit(now + Duration::from_secs(5)), None);
}
