//! Streaming: `GET /stream/<info-hash>/<file-index>` serves a file of a torrent while it
//! downloads, with HTTP ranges (a player seeks with them), and `GET /stream/<info-hash>.m3u`
//! a playlist of a torrent's audio and video files.
//!
//! The body is read in chunks through [`session::Session::stream_read`]: each chunk comes
//! once its pieces are verified (never unverified bytes), and the pieces around the reader's
//! position and its read-ahead are fetched before any other (the engine's deadlines). The
//! first chunk is read before the answer's head is sent, so a torrent that is stopped or a
//! file that is not selected gets a status and a reason, not a truncated body. When the
//! client hangs up, the reader ends and its window stops steering the download.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use session::{Session, SessionError, StreamFile, TorrentId};

use crate::App;

/// Bytes read at a time.
const CHUNK: u64 = 512 * 1024;
/// Bytes after the reader's position fetched first (within the file).
const READ_AHEAD: u64 = 8 << 20;

fn fail(code: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        m,
    )
        .into_response()
}

/// The torrent of a hex info-hash; `None` for none (or not a hash).
fn torrent_of(session: &Session, hash: &str) -> Option<TorrentId> {
    let valid = hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| session.id_of_hash(hash)).flatten()
}

fn no_torrent(hash: &str) -> Response {
    fail(
        StatusCode::NOT_FOUND,
        format!("no torrent with info-hash {hash}"),
    )
}

fn session_fail(e: SessionError) -> Response {
    match e {
        SessionError::NoSuchTorrent(_) | SessionError::NoSuchFile(..) => {
            fail(StatusCode::NOT_FOUND, e.to_string())
        }
        SessionError::ShuttingDown => fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        e => fail(StatusCode::CONFLICT, e.to_string()),
    }
}

/// The range a `Range` header asks of a body of `len` bytes: `Ok(None)` for the whole
/// body (no header, a unit other than bytes, or several ranges, which we answer whole),
/// `Err(())` when it cannot be satisfied.
pub(crate) fn parse_range(value: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = value else { return Ok(None) };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Result<u64, ()> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(());
        }
        s.parse().map_err(|_| ())
    };
    let (start, end) = if a.is_empty() {
        // The last `b` bytes.
        let n = num(b)?;
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start = num(a)?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            num(b)?.min(len.saturating_sub(1))
        };
        if start >= len || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some((start, end)))
}

/// The content type of a file, from its extension (what players and browsers need to
/// pick a decoder); `application/octet-stream` when unknown.
pub(crate) fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "avi" => "video/x-msvideo",
        "mov" => "video/quicktime",
        "mpg" | "mpeg" => "video/mpeg",
        "ts" => "video/mp2t",
        "ogv" => "video/ogg",
        "flv" => "video/x-flv",
        "wmv" => "video/x-ms-wmv",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "ogg" | "oga" => "audio/ogg",
        "opus" => "audio/opus",
        "wav" => "audio/wav",
        "srt" => "application/x-subrip",
        "vtt" => "text/vtt",
        "txt" | "nfo" => "text/plain; charset=utf-8",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        "epub" => "application/epub+zip",
        _ => "application/octet-stream",
    }
}

fn is_media(name: &str) -> bool {
    let ct = content_type(name);
    ct.starts_with("video/") || ct.starts_with("audio/")
}

/// `filename*=` of a `Content-Disposition`: RFC 5987 percent-encoding of UTF-8.
fn disposition(name: &str) -> String {
    let mut out = String::from("inline; filename*=UTF-8''");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Ends the reader when the body is dropped (finished or the client hung up).
struct Reader {
    session: Session,
    file: StreamFile,
    id: u64,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.session.stream_end(self.file.id, self.id);
    }
}

impl Reader {
    /// Reads at `pos` of the file, not past `end` (inclusive), up to [`CHUNK`] bytes and
    /// not past the end of the piece under `pos`: bytes flow as each piece is verified.
    async fn chunk(&self, pos: u64, end: u64) -> Result<Vec<u8>, SessionError> {
        let at = self.file.offset + pos;
        let plen = u64::from(self.file.piece_length.max(1));
        let to_piece_end = plen - at % plen;
        let len = (end + 1 - pos).min(CHUNK).min(to_piece_end) as u32;
        let ahead = (self.file.length - (pos + u64::from(len))).min(READ_AHEAD);
        self.session
            .stream_read(self.file.id, self.id, at, len, ahead)
            .await
    }
}

/// `GET|HEAD /stream/<info-hash>/<file-index>`.
pub(crate) async fn file(
    State(app): State<App>,
    Path((hash, index)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(id) = torrent_of(&app.session, &hash) else {
        return no_torrent(&hash);
    };
    let Ok(index) = index.parse::<usize>() else {
        return fail(StatusCode::NOT_FOUND, format!("no file {index}"));
    };
    let file = match app.session.stream_file(id, index) {
        Ok(f) => f,
        Err(e) => return session_fail(e),
    };
    let name = file.path.last().cloned().unwrap_or_default();
    let len = file.length;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match parse_range(range, len) {
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Ok(None) => (StatusCode::OK, 0, len.saturating_sub(1)),
        Err(()) => {
            let mut r = fail(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!(
                    "range {} outside the file's {len} bytes",
                    range.unwrap_or("")
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body_len = if len == 0 { 0 } else { end + 1 - start };
    tracing::debug!(
        "stream {hash}/{index}: {method} {}",
        range.unwrap_or("(whole file)")
    );
    let mut head = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type(&name))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, body_len)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_DISPOSITION, disposition(&name));
    if status == StatusCode::PARTIAL_CONTENT {
        head = head.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
    }
    if method == Method::HEAD || body_len == 0 {
        return head
            .body(Body::empty())
            .unwrap_or_else(|_| fail(StatusCode::INTERNAL_SERVER_ERROR, "bad head"));
    }
    let reader = Reader {
        id: app.session.new_reader(),
        session: app.session.clone(),
        file,
    };
    // The first chunk before the head: a stopped torrent gets a status, not a cut body.
    let first = match reader.chunk(start, end).await {
        Ok(b) => b,
        Err(e) => return session_fail(e),
    };
    let next = start + first.len() as u64;
    let rest = stream::unfold((reader, next), move |(reader, pos)| async move {
        if pos > end {
            return None;
        }
        match reader.chunk(pos, end).await {
            Ok(b) => {
                let n = b.len() as u64;
                Some((Ok::<_, std::io::Error>(b), (reader, pos + n)))
            }
            Err(e) => {
                tracing::debug!("stream of torrent {} ended: {e}", reader.file.id);
                // Cut the body: the client sees it short of its length.
                Some((Err(std::io::Error::other(e.to_string())), (reader, end + 1)))
            }
        }
    });
    let body = futures_util::StreamExt::chain(stream::iter([Ok(first)]), rest);
    head.body(Body::from_stream(body))
        .unwrap_or_else(|_| fail(StatusCode::INTERNAL_SERVER_ERROR, "bad head"))
}

/// `GET /stream/<info-hash>.m3u`: an M3U playlist of the torrent's audio and video files
/// (selected ones), each a `/stream/` URL on the host the request named.
pub(crate) async fn playlist(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(hash) = name
        .strip_suffix(".m3u")
        .or_else(|| name.strip_suffix(".m3u8"))
    else {
        return fail(StatusCode::NOT_FOUND, "not a playlist (<info-hash>.m3u)");
    };
    let Some(id) = torrent_of(&app.session, hash) else {
        return no_torrent(hash);
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let hash = hash.to_ascii_lowercase();
    let files = match app.session.stream_files(id) {
        Ok(f) => f,
        Err(e) => return session_fail(e),
    };
    let mut out = String::from("#EXTM3U\n");
    for f in files.iter().filter(|f| is_media(&f.path.join("/"))) {
        let title = f
            .path
            .last()
            .map_or("", |s| s.as_str())
            .replace(['\r', '\n'], " ");
        out.push_str(&format!(
            "#EXTINF:-1,{title}\nhttp://{host}/stream/{hash}/{}\n",
            f.index
        ));
    }
    (
        [(header::CONTENT_TYPE, "audio/x-mpegurl; charset=utf-8")],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=90-1000"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), Ok(Some((0, 99))));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 100), Ok(None));
        for bad in [
            "bytes=100-",
            "bytes=5-4",
            "bytes=-0",
            "bytes=x-1",
            "bytes=1",
            "bytes=-",
            "bytes=99999999999999999999999-",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(Some(bad), 100), Err(()), "{bad}");
        }
        assert_eq!(parse_range(Some("bytes=0-"), 0), Err(()));
    }

    #[test]
    fn content_types_and_dispositions() {
        assert_eq!(content_type("a/B.MKV"), "video/x-matroska");
        assert_eq!(content_type("x.mp4"), "video/mp4");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert!(is_media("song.flac") && !is_media("cover.jpg"));
        assert_eq!(
            disposition("a b\"é.mkv"),
            "inline; filename*=UTF-8''a%20b%22%C3%A9.mkv"
        );
    }
}
