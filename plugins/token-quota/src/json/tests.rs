use super::fast::special_run;
use super::*;

/// Every event of `input` fed in one chunk, or `None` when it is not JSON.
fn events(input: &[u8]) -> Option<Vec<Event>> {
    let mut lexer = Lexer::new();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        match lexer.next(input, &mut pos) {
            Step::Event(e) => out.push(e),
            Step::More => return lexer.is_complete().then_some(out),
            Step::Error => return None,
        }
    }
}

fn valid(input: &[u8]) -> bool {
    events(input).is_some()
}

#[test]
fn accepts_valid_documents() {
    for doc in [
        &b"{}"[..],
        b"[]",
        b" { \"a\" : [ 1 , -2.5e+3 , true , false , null , \"x\" ] } \n",
        b"0",
        b"-0",
        b"12.5E-7",
        b"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"",
        "\"h\u{e9}llo \u{1F600}\"".as_bytes(),
        b"[[[[]]]]",
        b"{\"a\":{\"b\":{}}}",
    ] {
        assert!(valid(doc), "{}", String::from_utf8_lossy(doc));
    }
}

#[test]
fn rejects_invalid_documents() {
    for doc in [
        &b""[..],
        b" ",
        b"{",
        b"{\"a\"}",
        b"{\"a\":}",
        b"{\"a\":1,}",
        b"[1,]",
        b"[1 2]",
        b"{1:2}",
        b"[}",
        b"{]",
        b"01",
        b"1.",
        b".5",
        b"1e",
        b"-",
        b"+1",
        b"tru",
        b"truex",
        b"nul",
        b"\"abc",
        b"\"\\x\"",
        b"\"\\u12\"",
        b"\"\\ud800\"",
        b"\"\\ud800\\u0041\"",
        b"\"\\udc00\"",
        b"\"a\nb\"",
        b"\"\xff\"",
        b"\"\xc0\xaf\"",
        b"\"\xed\xa0\x80\"",
        b"\"\xf4\x90\x80\x80\"",
        b"\"\xe2\x82\"",
        b"{} {}",
        b"1 2",
        b"[1]]",
    ] {
        assert!(!valid(doc), "{}", String::from_utf8_lossy(doc));
    }
}

#[test]
fn numbers_report_u64_integers_only() {
    let number = |doc: &[u8]| match events(doc).as_deref() {
        Some([_, Event::Scalar { scalar, .. }, _]) => *scalar,
        other => panic!("{other:?}"),
    };
    assert_eq!(number(b"[0]"), Scalar::Number(Some(0)));
    assert_eq!(number(b"[42]"), Scalar::Number(Some(42)));
    assert_eq!(
        number(b"[18446744073709551615]"),
        Scalar::Number(Some(u64::MAX))
    );
    assert_eq!(number(b"[18446744073709551616]"), Scalar::Number(None));
    assert_eq!(number(b"[99999999999999999999999]"), Scalar::Number(None));
    assert_eq!(number(b"[-1]"), Scalar::Number(None));
    assert_eq!(number(b"[-0]"), Scalar::Number(None));
    assert_eq!(number(b"[1.0]"), Scalar::Number(None));
    assert_eq!(number(b"[1e3]"), Scalar::Number(None));
}

#[test]
fn keys_decode_escapes_and_give_up_when_long() {
    let mut lexer = Lexer::new();
    let input = b"{\"us\\u0061g\\u0065\":1,\"a_key_much_longer_than_the_buffer\":2,\"\\u00e9\":3}";
    let mut pos = 0;
    let mut keys = Vec::new();
    loop {
        match lexer.next(input, &mut pos) {
            Step::Event(Event::Key { .. }) => keys.push(lexer.key().map(<[u8]>::to_vec)),
            Step::Event(_) => {}
            Step::More | Step::Error => break,
        }
    }
    assert_eq!(keys, vec![Some(b"usage".to_vec()), None, None]);
}

#[test]
fn spans_and_depths() {
    let evs = events(b"{\"k\": [true, \"s\"]}").unwrap();
    assert_eq!(
        evs,
        vec![
            Event::Open {
                object: true,
                depth: 1,
                at: 0
            },
            Event::Key { depth: 1 },
            Event::Open {
                object: false,
                depth: 2,
                at: 6
            },
            Event::Scalar {
                scalar: Scalar::True,
                depth: 2,
                start: 7,
                end: 11
            },
            Event::Scalar {
                scalar: Scalar::String,
                depth: 2,
                start: 13,
                end: 16
            },
            Event::Close { depth: 2, at: 16 },
            Event::Close { depth: 1, at: 17 },
        ]
    );
}

#[test]
fn depth_is_bounded() {
    let deep = |n: usize| {
        let mut doc = vec![b'['; n];
        doc.extend(std::iter::repeat_n(b']', n));
        doc
    };
    assert!(valid(&deep(usize::from(MAX_DEPTH))));
    assert!(!valid(&deep(usize::from(MAX_DEPTH) + 1)));
    assert!(!valid(&deep(10_000)));
}

#[test]
fn chunk_boundaries_do_not_matter() {
    let doc =
        "{\"a\\u00e9\": [1.5e3, \"x\u{1F600}\\ud83d\\ude00\", null, 123456], \"b\": -7}".as_bytes();
    let whole = events(doc).unwrap();
    for split in 0..=doc.len() {
        let (head, tail) = doc.split_at(split);
        let mut lexer = Lexer::new();
        let mut out = Vec::new();
        for chunk in [head, tail] {
            let mut pos = 0;
            loop {
                match lexer.next(chunk, &mut pos) {
                    Step::Event(e) => out.push(e),
                    Step::More => break,
                    Step::Error => panic!("error at split {split}"),
                }
            }
        }
        assert!(lexer.is_complete());
        assert_eq!(out, whole, "split {split}");
    }
}

fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// Events and decoded keys of `doc` fed in chunks cut at `splits`, or
/// `None` when it is not JSON.
#[allow(clippy::type_complexity)]
fn lexed(doc: &[u8], splits: &[usize]) -> Option<(Vec<Event>, Vec<Option<Vec<u8>>>)> {
    let mut lexer = Lexer::new();
    let (mut events, mut keys) = (Vec::new(), Vec::new());
    let mut from = 0;
    for &to in splits.iter().chain([&doc.len()]) {
        let chunk = &doc[from..to];
        from = to;
        let mut pos = 0;
        loop {
            match lexer.next(chunk, &mut pos) {
                Step::Event(e) => {
                    if let Event::Key { .. } = e {
                        keys.push(lexer.key().map(<[u8]>::to_vec));
                    }
                    events.push(e);
                }
                Step::More => break,
                Step::Error => return None,
            }
        }
    }
    lexer.is_complete().then_some((events, keys))
}

#[test]
fn escapes_decode_alike_at_every_split() {
    for doc in [
        &br#"{"\u0075sage":1,"k\u00e9":2,"\ud83d\ude00x":3,"a\nb\u0041":"\u0041\ud83d\ude00\n\/"}"#[..],
        br#"{"k":"\ud800\ud800"}"#,
        br#"{"k":"\ude00\ud83d"}"#,
        br#"{"k":"\udbff\udfff\uDBFF\uDFFF\uFFFF\u0000"}"#,
        br#"{"k":"\ud83d\u0041"}"#,
        br#"{"k":"\ud83dx"}"#,
        br#"{"k":"\u12g4"}"#,
        br#"{"\u00e9abcdefghijklmnopqrstuvwxyz":1,"abcdefghijklmnopqrstuvwxyz":2}"#,
        br#"{"abcdefghijklmnopqrstuvw":1,"abcdefghijklmnopqrstuvwx":2,"abcdefghijklmnopqrstuvwxy":3}"#,
        br#"[0,01,-0,1.5,12e3,18446744073709551616,true,false,null,nul]"#,
        br#"[0 ,1 , 2 ]"#,
    ] {
        let whole = lexed(doc, &[]);
        for split in 0..=doc.len() {
            assert_eq!(lexed(doc, &[split]), whole, "{doc:?} {split}");
        }
    }
    let (_, keys) = lexed(
        br#"{"\u0075sage":1,"k\u00e9":2,"x\ud83d\ude00":3,"a\nb\u0041":4,"abcdefghijklmnopqrstuvwx":5,"abcdefghijklmnopqrstuvwxy":6}"#,
        &[],
    )
    .unwrap();
    assert_eq!(
        keys,
        vec![
            Some(b"usage".to_vec()),
            None,
            None,
            Some(b"a\nbA".to_vec()),
            Some(b"abcdefghijklmnopqrstuvwx".to_vec()),
            None
        ]
    );
}

#[test]
fn special_run_matches_a_byte_loop() {
    // Every length and alignment around the word size, with a special
    // or non-ASCII byte at every position.
    let naive = |s: &[u8]| {
        let len = s.iter().position(|&b| is_special(b)).unwrap_or(s.len());
        (len, s[..len].is_ascii())
    };
    let base = b"abcdefghijklmnopqrstuvwxyz0123456789".to_vec();
    for len in 0..=base.len() {
        let plain = &base[..len];
        assert_eq!(special_run(plain), naive(plain));
        for at in 0..len {
            for b in [
                b'"', b'\\', 0x00, 0x1F, 0x20, 0x7F, 0x80, 0xFF, b'!', b'#', b'[', b']',
            ] {
                let mut s = plain.to_vec();
                s[at] = b;
                assert_eq!(special_run(&s), naive(&s), "{s:?}");
            }
        }
    }
}

#[test]
fn key_escapes_decode_on_every_path() {
    let input = b"{\"a\\n\\\"b\\/\\u0063\":1}";
    let whole = {
        let mut lexer = Lexer::new();
        let mut pos = 0;
        let mut key = None;
        while let Step::Event(e) = lexer.next(input, &mut pos) {
            if let Event::Key { .. } = e {
                key = lexer.key().map(<[u8]>::to_vec);
            }
        }
        key
    };
    assert_eq!(whole.as_deref(), Some(&b"a\n\"b/c"[..]));
}

#[test]
fn errors_are_sticky() {
    let mut lexer = Lexer::new();
    let mut pos = 0;
    assert_eq!(lexer.next(b"]", &mut pos), Step::Error);
    let mut pos = 0;
    assert_eq!(lexer.next(b"{}", &mut pos), Step::Error);
    let mut pos = 0;
    assert_eq!(lexer.next(b"", &mut pos), Step::Error);
    assert!(!lexer.is_complete());
}
