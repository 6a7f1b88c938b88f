use super::*;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn read_all(bytes: Vec<u8>) -> Vec<Frame> {
    let mut reader = FrameReader::new(std::io::Cursor::new(bytes));
    let mut frames = Vec::new();
    while let Some(frame) = reader.next().await.unwrap() {
        frames.push(frame);
    }
    frames
}

#[test]
fn the_dictionary_is_the_specs() {
    assert_eq!(DICTIONARY.len(), 1423);
    assert!(DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
    assert!(DICTIONARY.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
    // The Adler-32 a SPDY/3 header block names its dictionary by (bytes 2..6 of every
    // connection's first block: `78 bb e3 c6 a7 c2`).
    let mut deflate = Compress::new(Compression::default(), true);
    assert_eq!(deflate.set_dictionary(DICTIONARY).unwrap(), 0xe3c6_a7c2);
}

/// A SYN_STREAM as kubectl's port forwarding opens an error stream, its header block deflated
/// by C zlib against the dictionary (an implementation independent of ours).
const GOLDEN_SYN_STREAM: &str = "800300010000003d0000000100000000000078bbe3c6a7c202253a48f95b044eea1606\
     1606409ab308125f99a074cc68004e892545a989b9d0c2863515141500000000ffff";

/// The first frame kubectl 1.33 sends on a port-forward connection (`port-forward pod/web
/// 18766:8080`, one local connection), captured off the wire: Go's zlib, the same dictionary.
const KUBECTL_SYN_STREAM: &str = "800300010000003e00000001000000000000\
     78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c606160\
     61c0c0c0c0590489c64c50f2663400000000ffff";

#[tokio::test]
async fn kubectls_own_syn_stream_decodes() {
    let frames = read_all(hex(KUBECTL_SYN_STREAM)).await;
    let [
        Frame::SynStream {
            stream_id: 1,
            flags: 0,
            headers,
        },
    ] = frames.as_slice()
    else {
        panic!("{frames:?}");
    };
    let mut headers = headers.clone();
    headers.sort();
    assert_eq!(
        headers,
        self::headers(&[
            ("port", "8080"),
            ("requestid", "0"),
            ("streamtype", "error")
        ])
    );
}

#[tokio::test]
async fn a_golden_syn_stream_decodes() {
    let frames = read_all(hex(GOLDEN_SYN_STREAM)).await;
    assert_eq!(
        frames,
        vec![Frame::SynStream {
            stream_id: 1,
            flags: 0,
            headers: headers(&[
                ("port", "8080"),
                ("requestid", "0"),
                ("streamtype", "error")
            ]),
        }]
    );
}

#[test]
fn fixed_layout_frames_encode_as_the_spec_lays_them_out() {
    let mut deflate = deflater();
    let data = Frame::Data {
        stream_id: 3,
        flags: FLAG_FIN,
        data: b"hi".to_vec(),
    };
    assert_eq!(
        encode(&data, &mut deflate).unwrap(),
        [hex("0000000301000002"), b"hi".to_vec()].concat()
    );
    assert_eq!(
        encode(&Frame::Ping { id: 7 }, &mut deflate).unwrap(),
        hex("800300060000000400000007")
    );
    assert_eq!(
        encode(
            &Frame::RstStream {
                stream_id: 5,
                status: CANCEL
            },
            &mut deflate
        )
        .unwrap(),
        hex("80030003000000080000000500000005")
    );
    assert_eq!(
        encode(
            &Frame::GoAway {
                last_good_stream_id: 9,
                status: 0
            },
            &mut deflate
        )
        .unwrap(),
        hex("80030007000000080000000900000000")
    );
}

#[tokio::test]
async fn frames_round_trip_through_one_compression_stream_per_direction() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            flags: 0,
            headers: headers(&[("streamtype", "data"), ("port", "80")]),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: Vec::new(),
        },
        // A second block refers back into the first one's window.
        Frame::SynStream {
            stream_id: 3,
            flags: FLAG_FIN,
            headers: headers(&[("streamtype", "error"), ("port", "80")]),
        },
        Frame::Data {
            stream_id: 1,
            flags: 0,
            data: vec![7; 70_000],
        },
        Frame::Ping { id: 1 },
    ];
    let mut deflate = deflater();
    let mut wire = Vec::new();
    for frame in &frames {
        wire.extend(encode(frame, &mut deflate).unwrap());
    }
    assert_eq!(&wire[18..24], &hex("78bbe3c6a7c2"), "names the dictionary");
    assert_eq!(read_all(wire).await, frames);
}

#[tokio::test]
async fn other_control_frames_and_bad_input_are_told_apart() {
    // SETTINGS with no entries, then WINDOW_UPDATE.
    let frames = read_all(hex(
        "80030004000000040000000080030009000000080000000100010000",
    ))
    .await;
    assert_eq!(
        frames,
        vec![Frame::Other { kind: 4 }, Frame::Other { kind: 9 }]
    );
    let mut reader = FrameReader::new(std::io::Cursor::new(hex("8002000100000000")));
    assert!(matches!(reader.next().await, Err(SpdyError::Version(2))));
    let mut reader = FrameReader::new(std::io::Cursor::new(hex("80030006000000020000")));
    assert!(matches!(
        reader.next().await,
        Err(SpdyError::Malformed { frame: "PING", .. })
    ));
    let mut reader = FrameReader::new(std::io::Cursor::new(hex("8003")));
    assert!(matches!(reader.next().await, Err(SpdyError::Io(_))));
}
