use super::*;

fn text(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

fn feed(reassembly: &mut Reassembly, chunks: &[Chunk]) -> Vec<Reassembled> {
    chunks.iter().map(|c| reassembly.accept(c)).collect()
}

#[test]
fn cut_and_reassembled_byte_for_byte() {
    for len in [
        2,
        3,
        MAX_CHUNK_BYTES,
        MAX_CHUNK_BYTES + 1,
        10 * MAX_CHUNK_BYTES + 7,
    ] {
        let message = MessageId::random();
        let original = text(len);
        let chunks: Vec<Chunk> = Cutter::new(message, original.clone()).collect();
        assert!(chunks.len() >= 2);
        for chunk in &chunks {
            use crate::payload::Validate;
            assert_eq!(chunk.validate(), Ok(()), "len {len}");
        }
        let mut reassembly = Reassembly::new(len);
        let outcomes = feed(&mut reassembly, &chunks);
        let (last, rest) = outcomes.split_last().expect("pieces");
        assert!(rest.iter().all(|o| *o == Reassembled::Pending));
        assert_eq!(*last, Reassembled::Complete(original.into_bytes()));
        assert_eq!(reassembly.held, 0);
        assert_eq!(reassembly.held_bytes(), 0);
    }
}

#[test]
fn over_the_limit_is_refused_at_the_first_piece_and_nothing_is_held() {
    let chunks: Vec<Chunk> = Cutter::new(MessageId::random(), text(5 * MAX_CHUNK_BYTES)).collect();
    let mut reassembly = Reassembly::new(4 * MAX_CHUNK_BYTES);
    assert_eq!(
        reassembly.accept(&chunks[0]),
        Reassembled::Refused(ErrorCode::TooLarge)
    );
    for chunk in &chunks[1..] {
        assert_eq!(reassembly.accept(chunk), Reassembled::Skipped);
        assert_eq!(reassembly.held_bytes(), 0);
    }
    assert!(reassembly.messages.is_empty(), "the refusal is forgotten");
}

#[test]
fn messages_under_way_together_stay_within_the_limit() {
    let limit = 4 * MAX_CHUNK_BYTES;
    let mut reassembly = Reassembly::new(limit);
    let first: Vec<Chunk> = Cutter::new(MessageId::random(), text(3 * MAX_CHUNK_BYTES)).collect();
    let second: Vec<Chunk> = Cutter::new(MessageId::random(), text(2 * MAX_CHUNK_BYTES)).collect();
    assert_eq!(reassembly.accept(&first[0]), Reassembled::Pending);
    assert_eq!(
        reassembly.accept(&second[0]),
        Reassembled::Refused(ErrorCode::TooManyRequests)
    );
    let rest = feed(&mut reassembly, &first[1..]);
    assert!(matches!(rest.last(), Some(Reassembled::Complete(_))));
    // Once the first is done, a new message of the same size fits again.
    let third: Vec<Chunk> = Cutter::new(MessageId::random(), text(2 * MAX_CHUNK_BYTES)).collect();
    assert_eq!(reassembly.accept(&third[0]), Reassembled::Pending);
}

#[test]
fn at_most_four_messages_at_once() {
    let mut reassembly = Reassembly::new(usize::MAX / 2);
    for _ in 0..MAX_IN_PROGRESS {
        let chunks: Vec<Chunk> = Cutter::new(MessageId::random(), text(100)).collect();
        assert_eq!(reassembly.accept(&chunks[0]), Reassembled::Pending);
    }
    let chunks: Vec<Chunk> = Cutter::new(MessageId::random(), text(100)).collect();
    assert_eq!(
        reassembly.accept(&chunks[0]),
        Reassembled::Refused(ErrorCode::TooManyRequests)
    );
    assert_eq!(reassembly.messages.len(), MAX_IN_PROGRESS);
}

#[test]
fn broken_sequences_drop_the_message() {
    let message = MessageId::random();
    let chunks: Vec<Chunk> = Cutter::new(message, text(4 * MAX_CHUNK_BYTES)).collect();
    let limit = 8 * MAX_CHUNK_BYTES;

    let mut skipped = Reassembly::new(limit);
    skipped.accept(&chunks[0]);
    assert!(matches!(
        skipped.accept(&chunks[2]),
        Reassembled::Malformed(_)
    ));
    assert_eq!((skipped.held, skipped.held_bytes()), (0, 0));

    let mut changed = Reassembly::new(limit);
    changed.accept(&chunks[0]);
    let lying = Chunk {
        total_bytes: chunks[1].total_bytes + 1,
        ..chunks[1].clone()
    };
    assert!(matches!(changed.accept(&lying), Reassembled::Malformed(_)));

    let mut short = Reassembly::new(limit);
    let mut claims_more = chunks.clone();
    for chunk in &mut claims_more {
        chunk.total_bytes += 10;
    }
    let outcomes = feed(&mut short, &claims_more);
    assert!(matches!(outcomes.last(), Some(Reassembled::Malformed(_))));
    assert_eq!(short.held, 0);

    let mut overrun = Reassembly::new(limit);
    let mut claims_less = chunks.clone();
    for chunk in &mut claims_less {
        chunk.total_bytes -= 10;
    }
    let outcomes = feed(&mut overrun, &claims_less);
    assert!(matches!(outcomes.last(), Some(Reassembled::Malformed(_))));
    assert_eq!((overrun.held, overrun.held_bytes()), (0, 0));

    let mut garbage = Reassembly::new(limit);
    garbage.accept(&chunks[0]);
    let bad = Chunk {
        data: "!!!!".into(),
        ..chunks[1].clone()
    };
    assert!(matches!(garbage.accept(&bad), Reassembled::Malformed(_)));

    let mut twice = Reassembly::new(limit);
    twice.accept(&chunks[0]);
    assert!(matches!(
        twice.accept(&chunks[0]),
        Reassembled::Malformed(_)
    ));
    assert_eq!(twice.held, 0);

    let mut stray = Reassembly::new(limit);
    assert!(matches!(
        stray.accept(&chunks[1]),
        Reassembled::Malformed(_)
    ));
}

#[test]
fn interleaved_messages_reassemble_apart() {
    let (a, b) = (text(3 * MAX_CHUNK_BYTES), text(2 * MAX_CHUNK_BYTES + 5));
    let ca: Vec<Chunk> = Cutter::new(MessageId::random(), a.clone()).collect();
    let cb: Vec<Chunk> = Cutter::new(MessageId::random(), b.clone()).collect();
    let mut reassembly = Reassembly::new(8 * MAX_CHUNK_BYTES);
    let mut done = Vec::new();
    let longest = ca.len().max(cb.len());
    for i in 0..longest {
        for chunks in [&ca, &cb] {
            if let Some(chunk) = chunks.get(i)
                && let Reassembled::Complete(bytes) = reassembly.accept(chunk)
            {
                done.push(bytes);
            }
        }
    }
    done.sort();
    let mut want = vec![a.into_bytes(), b.into_bytes()];
    want.sort();
    assert_eq!(done, want);
}
