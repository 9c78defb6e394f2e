//! Property tests for the pure core: parsers never panic, encodings round-trip.

mod support;

use proptest::prelude::*;
use qlship::lines::{self, Piece};
use qlship::protocol::{self, Partition};
use qlship::row::Row;

fn field() -> impl Strategy<Value = String> {
    // Any Unicode except the pipe (a separator in queue_log, fine inside JSON).
    proptest::string::string_regex("[^|\n\r]{0,20}").unwrap()
}

fn row() -> impl Strategy<Value = Row> {
    (
        0i64..4_000_000_000,
        field(),
        field(),
        field(),
        field(),
        proptest::array::uniform5(field()),
    )
        .prop_map(|(time, call_id, queue, agent, verb, params)| {
            Row::new(
                time,
                &call_id,
                &queue,
                &agent,
                &verb,
                params.each_ref().map(|p| p.as_str()),
            )
        })
}

proptest! {
    #[test]
    fn spool_encoding_round_trips(r in row()) {
        let mut buf = Vec::new();
        r.encode_into(&mut buf);
        prop_assert_eq!(Row::decode(&buf).unwrap(), r);
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = qlship::parse::parse_line(&bytes);
    }

    #[test]
    fn a_written_row_parses_back(r in row()) {
        let line = format!("{}|{}|{}|{}|{}|{}", r.time, r.call_id(), r.queue(), r.agent(), r.verb(), r.params().join("|"));
        let parsed = qlship::parse::parse_line(line.as_bytes());
        // Fields with leading BOMs or trailing CRs are normalised by design; others round-trip.
        if !line.contains('\u{feff}') {
            prop_assert_eq!(parsed.unwrap(), r);
        }
    }

    #[test]
    fn row_json_is_ascii_and_decodes_to_the_same_strings(r in row()) {
        let j = protocol::row_object(&r, &Partition { token: "P".into(), tz_offset: 0 });
        prop_assert!(j.is_ascii());
        let v: miniserde::json::Value = miniserde::json::from_str(&j).unwrap();
        let miniserde::json::Value::Object(m) = v else { panic!("not an object") };
        match m.get("agent") {
            Some(miniserde::json::Value::String(a)) => prop_assert_eq!(a, r.agent()),
            other => prop_assert!(false, "agent is {:?}", other.is_some()),
        }
    }

    #[test]
    fn json_strings_are_escaped_character_by_character(s in any::<String>()) {
        // The encoder copies runs of plain bytes; this is the obvious per-character one.
        let mut expected = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => expected.push_str("\\\""),
                '\\' => expected.push_str("\\\\"),
                '\n' => expected.push_str("\\n"),
                '\r' => expected.push_str("\\r"),
                '\t' => expected.push_str("\\t"),
                ' '..='~' => expected.push(c),
                _ => {
                    for u in c.encode_utf16(&mut [0u16; 2]) {
                        expected.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
        }
        expected.push('"');
        let mut got = String::new();
        protocol::json_string(&s, &mut got);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn form_body_decodes_to_the_json(s in "\\PC{0,60}") {
        // Decoded by the strict stand-in's form parser, as the server would.
        let body = protocol::form_body(&s);
        prop_assert_eq!(support::fake_qm::decode_form(body.as_bytes()).unwrap(), s.as_bytes().to_vec());
    }

    #[test]
    fn splitting_in_any_chunks_yields_every_complete_line_once(
        text in proptest::collection::vec("[a-z0-9|]{1,30}", 1..20),
        cuts in proptest::collection::vec(1usize..50, 1..10),
    ) {
        let joined: String = text.iter().map(|l| format!("{l}\n")).collect();
        let bytes = joined.as_bytes();
        let mut offset = 0usize;
        let mut got = Vec::new();
        let mut cut = cuts.iter().cycle();
        while offset < bytes.len() {
            let end = (offset + cut.next().unwrap()).min(bytes.len());
            let split = lines::split(&bytes[offset..end], offset as u64, false, false, usize::MAX);
            for p in &split.pieces {
                if let Piece::Line { bytes, .. } = p {
                    got.push(String::from_utf8(bytes.to_vec()).unwrap());
                }
            }
            if split.consumed == 0 && end == bytes.len() {
                break;
            }
            offset += split.consumed;
            if split.consumed == 0 {
                // A partial line: read a bigger window next time, as the tailer does.
                let split = lines::split(&bytes[offset..], offset as u64, false, false, usize::MAX);
                for p in &split.pieces {
                    if let Piece::Line { bytes, .. } = p {
                        got.push(String::from_utf8(bytes.to_vec()).unwrap());
                    }
                }
                offset += split.consumed;
            }
        }
        prop_assert_eq!(got, text);
    }
}
