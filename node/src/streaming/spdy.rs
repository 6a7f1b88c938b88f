//! SPDY/3.1 framing, as much of it as Kubernetes' streaming protocols use (kubectl and the
//! kubelet speak it through moby/spdystream): the frames ([`Frame`]), reading and writing them
//! ([`FrameReader`], [`FrameWriter`]), and the compression of header blocks: one zlib stream per
//! direction for the connection's life, primed with the spec's dictionary.
//!
//! Spec: <https://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1/> (§2.2 framing,
//! §2.6 control frames, §2.6.10 name/value header blocks and their compression).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The last frame of a stream in this direction.
pub const FLAG_FIN: u8 = 0x01;
const VERSION: u16 = 3;
const CONTROL: u8 = 0x80;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
/// Stream IDs are 31 bits; the top bit is reserved.
const STREAM_ID: u32 = 0x7fff_ffff;
/// The largest header block accepted once decompressed.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// The header compression dictionary (§2.6.10.1), 1423 bytes.
const DICTIONARY: &[u8] = b"\
    \0\0\0\x07options\0\0\0\x04head\0\0\0\x04post\0\0\0\x03put\0\0\0\x06delete\
    \0\0\0\x05trace\0\0\0\x06accept\0\0\0\x0eaccept-charset\0\0\0\x0faccept-encoding\
    \0\0\0\x0faccept-language\0\0\0\x0daccept-ranges\0\0\0\x03age\0\0\0\x05allow\
    \0\0\0\x0dauthorization\0\0\0\x0dcache-control\0\0\0\x0aconnection\0\0\0\x0ccontent-base\
    \0\0\0\x10content-encoding\0\0\0\x10content-language\0\0\0\x0econtent-length\
    \0\0\0\x10content-location\0\0\0\x0bcontent-md5\0\0\0\x0dcontent-range\
    \0\0\0\x0ccontent-type\0\0\0\x04date\0\0\0\x04etag\0\0\0\x06expect\0\0\0\x07expires\
    \0\0\0\x04from\0\0\0\x04host\0\0\0\x08if-match\0\0\0\x11if-modified-since\
    \0\0\0\x0dif-none-match\0\0\0\x08if-range\0\0\0\x13if-unmodified-since\
    \0\0\0\x0dlast-modified\0\0\0\x08location\0\0\0\x0cmax-forwards\0\0\0\x06pragma\
    \0\0\0\x12proxy-authenticate\0\0\0\x13proxy-authorization\0\0\0\x05range\
    \0\0\0\x07referer\0\0\0\x0bretry-after\0\0\0\x06server\0\0\0\x02te\0\0\0\x07trailer\
    \0\0\0\x11transfer-encoding\0\0\0\x07upgrade\0\0\0\x0auser-agent\0\0\0\x04vary\
    \0\0\0\x03via\0\0\0\x07warning\0\0\0\x10www-authenticate\0\0\0\x06method\0\0\0\x03get\
    \0\0\0\x06status\0\0\0\x06200 OK\0\0\0\x07version\0\0\0\x08HTTP/1.1\0\0\0\x03url\
    \0\0\0\x06public\0\0\0\x0aset-cookie\0\0\0\x0akeep-alive\0\0\0\x06origin1001012012022052\
    06300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Author\
    itative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403\
    \x20Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavai\
    lableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri,\x20\
    Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application\
    /xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-\
    8charset=iso-8859-1,utf-,*,enq=0.";

/// A stream's name/value headers, names lower-case as SPDY sends them.
pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// SETTINGS, HEADERS, WINDOW_UPDATE and control frames of unknown types: read, and of no
    /// use to the streaming protocols.
    Other {
        kind: u16,
    },
}

/// RST_STREAM status: the stream is being torn down normally.
pub const CANCEL: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY version {0} (only 3 is spoken)")]
    Version(u16),
    #[error("malformed SPDY {frame} frame: {why}")]
    Malformed {
        frame: &'static str,
        why: &'static str,
    },
    #[error("SPDY header block compression: {0}")]
    Compression(String),
}

fn malformed(frame: &'static str, why: &'static str) -> SpdyError {
    SpdyError::Malformed { frame, why }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Reads frames, inflating header blocks with the connection's one inflate stream.
pub struct FrameReader<R> {
    io: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        FrameReader {
            io,
            inflate: Decompress::new(true),
        }
    }

    /// The next frame; `None` when the peer closed the connection between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        let mut filled = 0;
        while filled < head.len() {
            match self.io.read(&mut head[filled..]).await? {
                0 if filled == 0 => return Ok(None),
                0 => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
                n => filled += n,
            }
        }
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut body = vec![0u8; len];
        self.io.read_exact(&mut body).await?;
        decode(head, body, &mut self.inflate).map(Some)
    }
}

/// Writes frames, deflating header blocks with the connection's one deflate stream.
pub struct FrameWriter<W> {
    io: W,
    deflate: Compress,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(io: W) -> Self {
        FrameWriter {
            io,
            deflate: deflater(),
        }
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<(), SpdyError> {
        let bytes = encode(frame, &mut self.deflate)?;
        self.io.write_all(&bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Ends the write side of the connection.
    pub async fn shutdown(&mut self) -> Result<(), SpdyError> {
        Ok(self.io.shutdown().await?)
    }
}

fn deflater() -> Compress {
    let mut deflate = Compress::new(Compression::default(), true);
    deflate
        .set_dictionary(DICTIONARY)
        .expect("a fresh deflate stream takes a dictionary");
    deflate
}

/// One frame from its 8-byte head and its body.
fn decode(head: [u8; 8], body: Vec<u8>, inflate: &mut Decompress) -> Result<Frame, SpdyError> {
    let flags = head[4];
    if head[0] & CONTROL == 0 {
        return Ok(Frame::Data {
            stream_id: u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & STREAM_ID,
            flags,
            data: body,
        });
    }
    let version = u16::from_be_bytes([head[0] & !CONTROL, head[1]]);
    if version != VERSION {
        return Err(SpdyError::Version(version));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let word = |frame, at| u32_at(&body, at).ok_or_else(|| malformed(frame, "too short"));
    Ok(match kind {
        SYN_STREAM => Frame::SynStream {
            stream_id: word("SYN_STREAM", 0)? & STREAM_ID,
            flags,
            // Associated-to stream ID, priority and slot precede the header block.
            headers: parse_block(&inflate_block(inflate, body.get(10..).unwrap_or_default())?)?,
        },
        SYN_REPLY => Frame::SynReply {
            stream_id: word("SYN_REPLY", 0)? & STREAM_ID,
            flags,
            headers: parse_block(&inflate_block(inflate, &body[4..])?)?,
        },
        RST_STREAM => Frame::RstStream {
            stream_id: word("RST_STREAM", 0)? & STREAM_ID,
            status: word("RST_STREAM", 4)?,
        },
        PING => Frame::Ping {
            id: word("PING", 0)?,
        },
        GOAWAY => Frame::GoAway {
            last_good_stream_id: word("GOAWAY", 0)? & STREAM_ID,
            // SPDY/3 added the status; accept a GOAWAY without one.
            status: u32_at(&body, 4).unwrap_or(0),
        },
        kind => Frame::Other { kind },
    })
}

/// A frame's wire form.
fn encode(frame: &Frame, deflate: &mut Compress) -> Result<Vec<u8>, SpdyError> {
    let control = |kind: u16, flags: u8, body: Vec<u8>| {
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&(VERSION | u16::from(CONTROL) << 8).to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes()[1..]);
        out.extend_from_slice(&body);
        out
    };
    let words = |words: &[u32]| {
        words
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<u8>>()
    };
    Ok(match frame {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
        } => {
            // Associated-to stream 0, priority 0, slot 0.
            let mut body = words(&[stream_id & STREAM_ID, 0]);
            body.extend_from_slice(&[0, 0]);
            body.extend(deflate_block(deflate, &block(headers))?);
            control(SYN_STREAM, *flags, body)
        }
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        } => {
            let mut body = words(&[stream_id & STREAM_ID]);
            body.extend(deflate_block(deflate, &block(headers))?);
            control(SYN_REPLY, *flags, body)
        }
        Frame::RstStream { stream_id, status } => {
            control(RST_STREAM, 0, words(&[stream_id & STREAM_ID, *status]))
        }
        Frame::Ping { id } => control(PING, 0, words(&[*id])),
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => control(
            GOAWAY,
            0,
            words(&[last_good_stream_id & STREAM_ID, *status]),
        ),
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let mut out = words(&[stream_id & STREAM_ID]);
            out.push(*flags);
            let len = u32::try_from(data.len())
                .ok()
                .filter(|len| *len < 1 << 24)
                .ok_or_else(|| malformed("DATA", "longer than 16 MiB"))?;
            out.extend_from_slice(&len.to_be_bytes()[1..]);
            out.extend_from_slice(data);
            out
        }
        Frame::Other { .. } => return Err(malformed("control", "not written by this server")),
    })
}

/// A header block before compression: a count, then length-prefixed names and values.
fn block(headers: &Headers) -> Vec<u8> {
    let length = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    let mut out = length(headers.len()).to_vec();
    for (name, value) in headers {
        for bytes in [name.as_bytes(), value.as_bytes()] {
            out.extend_from_slice(&length(bytes.len()));
            out.extend_from_slice(bytes);
        }
    }
    out
}

fn parse_block(block: &[u8]) -> Result<Headers, SpdyError> {
    let bad = || malformed("header block", "lengths past its end");
    let count = u32_at(block, 0).ok_or_else(bad)?;
    let mut at = 4;
    let string = |at: &mut usize| -> Result<String, SpdyError> {
        let len = u32_at(block, *at).ok_or_else(bad)? as usize;
        let bytes = block.get(*at + 4..*at + 4 + len).ok_or_else(bad)?;
        *at += 4 + len;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    };
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = string(&mut at)?;
        let value = string(&mut at)?;
        headers.push((name, value));
    }
    Ok(headers)
}

fn inflate_block(inflate: &mut Decompress, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
    let failed = |e: flate2::DecompressError| SpdyError::Compression(e.to_string());
    let mut out = Vec::with_capacity(input.len() * 4 + 256);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 256 {
            out.reserve(out.capacity());
        }
        let (before_in, before_out) = (inflate.total_in(), inflate.total_out());
        let asked_for_dictionary =
            match inflate.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync) {
                Ok(_) => false,
                // The stream's first block asks for the dictionary (by its Adler-32).
                Err(e) if e.needs_dictionary().is_some() => {
                    inflate.set_dictionary(DICTIONARY).map_err(failed)?;
                    true
                }
                Err(e) => return Err(failed(e)),
            };
        consumed += (inflate.total_in() - before_in) as usize;
        if out.len() > MAX_HEADER_BLOCK {
            return Err(malformed("header block", "too large"));
        }
        // Done once the input is used up and the output had room to spare.
        if consumed >= input.len() && out.capacity() > out.len() {
            return Ok(out);
        }
        let progressed = inflate.total_in() != before_in || inflate.total_out() != before_out;
        if !progressed && !asked_for_dictionary {
            return Err(malformed("header block", "does not inflate"));
        }
    }
}

fn deflate_block(deflate: &mut Compress, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
    let mut out = Vec::with_capacity(input.len() + 64);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity());
        }
        let before = deflate.total_in();
        deflate
            .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        consumed += (deflate.total_in() - before) as usize;
        // A sync flush is complete once it leaves output room unused.
        if consumed >= input.len() && out.capacity() > out.len() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
#[path = "spdy_tests.rs"]
mod tests;
