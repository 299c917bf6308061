use serde_json::json;

use super::*;
use crate::payload::{ExecRequest, ExecResponse};
use crate::samples::{alice, bob, example_time};
use crate::{Envelope, Identity};

fn request(from: &Identity, to: &Identity) -> Envelope {
    let body = Body::ExecRequest(ExecRequest::new("sum", json!({"values": [1, 2, 3.5]})));
    Envelope::new(from.did(), Some(to.did()), body, example_time())
}

fn answer(from: &Identity, to: &Identity, request: &Envelope, status: ExecStatus) -> String {
    let body = Body::ExecResponse(ExecResponse {
        status,
        result: Some(json!(6.5)),
        error: None,
        execution_time_ms: 1,
    });
    Envelope::new(from.did(), Some(to.did()), body, example_time())
        .in_reply_to(request.id)
        .sign(from)
        .expect("sign")
        .into_string()
}

fn receipt() -> Receipt {
    let (a, b) = (alice(), bob());
    let asked = request(&a, &b);
    let response = answer(&b, &a, &asked, ExecStatus::Ok);
    let request = asked.sign(&a).expect("sign").into_string();
    Receipt::new(request, response)
}

#[test]
fn a_receipt_verifies_with_the_two_dids_alone() {
    let verified = receipt().verify().expect("verifies");
    assert_eq!(verified.caller, alice().did());
    assert_eq!(verified.callee, bob().did());
    assert_eq!(verified.capability, "sum");
    assert_eq!(verified.status, ExecStatus::Ok);
    assert_eq!(verified.result, Some(json!(6.5)));
    let file = serde_json::to_string(&receipt()).expect("JSON");
    let read: Receipt = serde_json::from_str(&file).expect("reads back");
    assert!(read.verify().is_ok());
}

#[test]
fn one_byte_changed_anywhere_and_it_does_not() {
    let good = receipt();
    for (field, text) in [("request", &good.request), ("response", &good.response)] {
        for at in [
            text.find("6.5").or(text.find("3.5")),
            text.find("sum"),
            Some(8),
        ] {
            let Some(at) = at else { continue };
            let mut bytes = text.clone().into_bytes();
            bytes[at] = if bytes[at] == b'7' { b'8' } else { b'7' };
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            let mut bad = good.clone();
            if field == "request" {
                bad.request = changed;
            } else {
                bad.response = changed;
            }
            assert!(
                bad.verify().is_err(),
                "{field} changed at {at} still verifies"
            );
        }
    }
}

#[test]
fn an_answer_to_another_request_or_from_someone_else_is_refused() {
    let (a, b) = (alice(), bob());
    let asked = request(&a, &b);
    let other = request(&a, &b);
    let request_text = asked.clone().sign(&a).expect("sign").into_string();

    let to_other = Receipt::new(request_text.clone(), answer(&b, &a, &other, ExecStatus::Ok));
    assert_eq!(
        to_other.verify().err(),
        Some(ReceiptError::Mismatch("it names another request"))
    );
    let stranger = Identity::from_seed(&[7; 32]);
    let forged = Receipt::new(
        request_text.clone(),
        answer(&stranger, &a, &asked, ExecStatus::Ok),
    );
    assert_eq!(
        forged.verify().err(),
        Some(ReceiptError::Mismatch("it is between other agents"))
    );
    let partial = Receipt::new(request_text, answer(&b, &a, &asked, ExecStatus::Partial));
    assert!(matches!(partial.verify(), Err(ReceiptError::Mismatch(_))));
    let mut format = receipt();
    format.format = "ioap.receipt.v0".into();
    assert_eq!(format.verify().err(), Some(ReceiptError::Format));
}

#[test]
fn a_receipt_of_carried_messages_verifies_and_one_byte_changed_does_not() {
    let (a, b) = (alice(), bob());
    let mut asked = request(&a, &b);
    if let Body::ExecRequest(call) = &mut asked.body {
        call.args = json!({"text": "x".repeat(100_000)});
    }
    let body = Body::ExecResponse(ExecResponse {
        status: ExecStatus::Ok,
        result: Some(json!("y".repeat(100_000))),
        error: None,
        execution_time_ms: 1,
    });
    let response = Envelope::new(b.did(), Some(a.did()), body, example_time())
        .in_reply_to(asked.id)
        .sign_carried_up_to(&b, 1 << 20)
        .expect("sign")
        .into_string();
    let request = asked
        .sign_carried_up_to(&a, 1 << 20)
        .expect("sign")
        .into_string();
    let good = Receipt::new(request, response);
    assert!(good.verify().is_ok());
    let mut bad = good.clone();
    bad.response = bad.response.replacen("yyyy", "yyyz", 1);
    assert!(matches!(
        bad.verify(),
        Err(ReceiptError::BadSignature("response"))
    ));
}
