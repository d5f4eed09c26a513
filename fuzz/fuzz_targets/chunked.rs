//! The host's chunked decoder on any bytes, fed in pieces and with an output buffer of
//! sizes the input picks: it never panics, never writes more than it reads, and gives the
//! same payload, end and verdict however the input is split (the state machine is
//! incremental; a split must never change where a body ends).
#![no_main]

use isapi_host_fuzz::http::ChunkedDecoder;
use libfuzzer_sys::fuzz_target;

/// Decodes `input` in pieces of `piece` bytes into a buffer of `out` bytes: the payload,
/// the bytes consumed when the body ended (None if it did not), or the error.
fn run(input: &[u8], piece: usize, out: usize) -> Result<(Vec<u8>, Option<usize>), String> {
    let mut d = ChunkedDecoder::default();
    let mut buf = vec![0u8; out];
    let (mut payload, mut pos) = (Vec::new(), 0);
    while pos < input.len() && !d.is_done() {
        let end = (pos + piece).min(input.len());
        let (used, made) = d
            .decode(&input[pos..end], &mut (&mut buf[..]).into())
            .map_err(|e| format!("{e:?}"))?;
        assert!(used <= end - pos && made <= used && made <= out);
        payload.extend_from_slice(&buf[..made]);
        pos += used;
        if used == 0 && made == 0 {
            // Only a full output buffer (none here: it is emptied each time) or the end
            // stop a decoder that has input.
            assert!(d.is_done(), "no progress at {pos}");
        }
    }
    Ok((payload, d.is_done().then_some(pos)))
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    let piece = 1 + (knobs & 0x0f) as usize;
    let out = 1 + (knobs >> 4) as usize;
    let whole = run(input, input.len().max(1), 1 << 16);
    let split = run(input, piece, out);
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("whole: {whole:?}, in pieces of {piece} into {out}: {split:?}"),
    }
});
