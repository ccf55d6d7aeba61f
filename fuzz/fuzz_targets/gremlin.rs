//! Gremlin parser: arbitrary UTF-8 never panics the parser; whatever parses prints canonically:
//! `parse(&q.to_string()) == Ok(q)`, and printing the re-parsed query gives the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match topotap_grammar::parse(text) {
        Ok(q) => {
            let printed = q.to_string();
            let again = topotap_grammar::parse(&printed)
                .unwrap_or_else(|e| panic!("{printed:?} (printed from {text:?}) fails: {e}"));
            assert_eq!(again, q, "{text:?} printed as {printed:?}");
            assert_eq!(again.to_string(), printed);
        }
        Err(e) => {
            assert!(e.position <= text.len());
            assert!(!e.to_string().contains('\n'));
        }
    }
});
