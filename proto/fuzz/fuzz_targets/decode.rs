//! Arbitrary bytes as a stream of frames: take frames out the way a receiver
//! does, decode each as a request and as a reply, and check that whatever
//! decodes re-encodes to a value that decodes back equal (and, since the
//! encoding is canonical, to the very same bytes).
//!
//! Run from `proto/` (needs nightly and `cargo install cargo-fuzz`), growing
//! the untracked `fuzz/corpus/decode` from the named seeds in
//! `fuzz/seeds/decode` (CONTRIBUTING.md has more):
//! `mkdir -p fuzz/corpus/decode && cargo +nightly fuzz run decode
//! fuzz/corpus/decode fuzz/seeds/decode -- -max_total_time=300`

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use seckill_proto::{Frame, Reply, Request, MAX_REPLY_FRAME};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // The larger limit, so that long bodies reach the decoders too.
    while let Ok((frame, used)) = Frame::parse(rest, MAX_REPLY_FRAME) {
        assert!(used <= rest.len(), "a frame claims more than the buffer");
        let original = &rest[..used];

        if let Ok(request) = Request::decode(&frame) {
            let mut buf = BytesMut::new();
            request.encode(frame.id, &mut buf);
            let (again, again_used) =
                Frame::parse(&buf, MAX_REPLY_FRAME).expect("a re-encoded request frames");
            assert_eq!(again_used, buf.len());
            assert_eq!(again.id, frame.id);
            assert_eq!(
                Request::decode(&again).as_ref(),
                Ok(&request),
                "decode(encode(x)) != x"
            );
            assert_eq!(&buf[..], original, "the request encoding is not canonical");
        }

        if let Ok((to, reply)) = Reply::decode(&frame) {
            let mut buf = BytesMut::new();
            reply.encode(to as u8, frame.id, &mut buf);
            let (again, _) =
                Frame::parse(&buf, MAX_REPLY_FRAME).expect("a re-encoded reply frames");
            assert_eq!(
                Reply::decode(&again).as_ref(),
                Ok(&(to, reply.clone())),
                "decode(encode(x)) != x"
            );
            assert_eq!(&buf[..], original, "the reply encoding is not canonical");
        }

        rest = &rest[used..];
    }
});
