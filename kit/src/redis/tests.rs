use super::*;
use crate::calls::StreamId;
use crate::fake::FakeHost;
use crate::resp::reference::command;

#[test]
fn evalsha_sends_what_the_plain_command_sends() {
    // The name and digest copied as written with the script, and
    // `numkeys` written in place: the command's bytes by definition,
    // over both transports; and what a NOSCRIPT retry then sends is
    // the same command as EVAL.
    const SCRIPT: Script = Script::new("return #KEYS");
    for native in [false, true] {
        for keys in [0usize, 1, 2, 9, 10, 12] {
            let cluster = "redis".to_owned();
            let (transport, form) = match native {
                true => (Transport::Native { cluster }, Form::Resp),
                false => (Transport::Webdis { cluster }, Form::Path),
            };
            let mut client = RedisClient {
                transport,
                timeout: Duration::from_millis(5),
                cluster: false,
                command: CommandBuf::default(),
            };
            let (mut host, mut calls) = (FakeHost::new(), Calls::default());
            let redis = Redis {
                client: &mut client,
                host: &mut host,
                calls: &mut calls,
                owner: Owner::Stream(StreamId::default()),
            };
            let names: Vec<String> = (0..keys).map(|k| format!("k:{{{k}}}")).collect();
            let mut cmd = redis.evalsha(&SCRIPT);
            for name in &names {
                cmd = cmd.key(name.as_bytes());
            }
            cmd.arg_int(60).send().unwrap();

            let count = keys.to_string();
            let mut args: Vec<&[u8]> = vec![b"EVALSHA", SCRIPT.sha1_hex().as_bytes()];
            args.push(count.as_bytes());
            args.extend(names.iter().map(|name| name.as_bytes()));
            args.push(b"60");
            let want = command(form, &args);
            let call = host.last_call.as_ref().unwrap();
            match native {
                true => assert_eq!(call.body, want),
                false => assert_eq!(call.headers.get(":path"), Some(&want[..])),
            }

            let kept = &calls.entries_for_tests()[0].retry_command;
            assert_eq!(kept.bytes(), want);
            // Redis does not know the script: the same call goes again
            // as EVAL, and its owner hears nothing yet.
            let token = host.last_call.as_ref().unwrap().token;
            let noscript = b"-NOSCRIPT No matching script.\r\n";
            host.answer_http(200, noscript);
            let taken = calls.take(token).unwrap();
            let answer = match native {
                true => HostAnswer::Native {
                    status: 0,
                    size: noscript.len(),
                },
                false => HostAnswer::Webdis {
                    headers: 1,
                    body_size: noscript.len(),
                },
            };
            let mut scratch = ReplyScratch::default();
            let got = client.receive(&mut host, &mut calls, taken, answer, &mut scratch);
            assert!(got.is_none(), "retried, not delivered");
            args[0] = b"EVAL";
            args[1] = SCRIPT.source().as_bytes();
            let want = command(form, &args);
            let call = host.last_call.as_ref().unwrap();
            match native {
                true => assert_eq!(call.body, want),
                false => assert_eq!(call.headers.get(":path"), Some(&want[..])),
            }
        }
    }
}

/// Every kind of host answer, over both transports, becomes the reply
/// or the error its owner gets, in `receive` alone.
#[test]
fn host_answers_become_replies_or_errors() {
    // (transport native, HTTP status, body, what the owner gets: the
    // reply these RESP bytes hold, or an error)
    type Case = (
        bool,
        Option<u16>,
        &'static [u8],
        Result<&'static [u8], RedisError>,
    );
    let cases: [Case; 9] = [
        (false, Some(200), b":7\r\n", Ok(b":7\r\n")),
        // A RESP body is Redis's answer whatever the status says.
        (false, Some(503), b"-ERR x\r\n", Ok(b"-ERR x\r\n")),
        (
            false,
            Some(504),
            b"upstream request timeout",
            Err(RedisError::Timeout),
        ),
        (false, Some(503), b"", Err(RedisError::Http(503))),
        (false, Some(200), b":7", Err(RedisError::Protocol)),
        (false, None, b"", Err(RedisError::Network)),
        (true, Some(0), b"$1\r\nv\r\n", Ok(b"$1\r\nv\r\n")),
        (true, Some(0), b"garbage", Err(RedisError::Protocol)),
        (true, Some(1), b"", Err(RedisError::Network)),
    ];
    for (native, status, body, want) in cases {
        let cluster = "redis".to_owned();
        let transport = match native {
            true => Transport::Native { cluster },
            false => Transport::Webdis { cluster },
        };
        let mut client = RedisClient {
            transport,
            timeout: Duration::from_millis(5),
            cluster: false,
            command: CommandBuf::default(),
        };
        let (mut host, mut calls) = (FakeHost::new(), Calls::default());
        Redis {
            client: &mut client,
            host: &mut host,
            calls: &mut calls,
            owner: Owner::Root(3),
        }
        .get(b"k")
        .unwrap();
        let token = host.last_call.as_ref().unwrap().token;
        host.call_response_body = body.to_vec();
        host.call_response_headers.clear();
        let answer = match (native, status) {
            (true, status) => HostAnswer::Native {
                status: u32::from(status.unwrap_or(0)),
                size: body.len(),
            },
            (false, Some(status)) => {
                host.answer_http(status, body);
                HostAnswer::Webdis {
                    headers: 1,
                    body_size: body.len(),
                }
            }
            (false, None) => HostAnswer::Webdis {
                headers: 0,
                body_size: 0,
            },
        };
        let taken = calls.take(token).unwrap();
        assert_eq!(taken.owner, Owner::Root(3));
        let mut scratch = ReplyScratch::default();
        let got = client
            .receive(&mut host, &mut calls, taken, answer, &mut scratch)
            .expect("a GET is never retried");
        let got = got.map(|reply| reply.to_string());
        let want = want.map(|bytes| resp::decode(bytes).unwrap().reply(bytes).to_string());
        assert_eq!(
            got, want,
            "native {native}, status {status:?}, body {body:?}"
        );
    }
}

#[test]
fn sha1_agrees_with_sha1_smol_at_every_padding_boundary() {
    // Lengths around 55/56/64 bytes exercise the one- and two-block
    // paddings.
    let text: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    for len in 0..text.len() {
        let bytes = &text[..len];
        assert_eq!(
            sha1(bytes),
            sha1_smol::Sha1::from(bytes).digest().bytes(),
            "length {len}"
        );
    }
    assert_eq!(
        Script::new("abc").sha1_hex(),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
}

#[test]
fn script_digest_matches_redis() {
    // `redis-cli SCRIPT LOAD "return 1"` answers this digest.
    assert_eq!(
        Script::new("return 1").sha1_hex(),
        "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
    );
}
