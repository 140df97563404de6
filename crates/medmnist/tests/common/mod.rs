//! Test helpers: write `.npy` / `.npz` fixtures and serve bytes over HTTP.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

/// A `.npy` v1.0 file: magic, version, little-endian u16 header length, the
/// header dict padded with spaces and ended by `\n` so the data starts at a
/// multiple of 64 bytes (as numpy writes it), then `data`.
pub fn npy(descr: &str, fortran_order: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let order = if fortran_order { "True" } else { "False" };
    npy_raw(&format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}"), data)
}

/// A `.npy` v1.0 file with the header dict text as given, padded as numpy pads it.
pub fn npy_raw(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut dict = dict.to_string();
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out.extend(data);
    out
}

/// A C-order `uint8` `.npy` file.
pub fn npy_u8(shape: &[usize], data: &[u8]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "fixture shape/data mismatch"
    );
    npy("|u1", false, shape, data)
}

/// Write a zip archive with the given members.
pub fn write_zip(path: &Path, members: &[(String, Vec<u8>)], method: CompressionMethod) {
    let mut zip = zip::ZipWriter::new(File::create(path).expect("create fixture"));
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in members {
        zip.start_file(name.as_str(), options)
            .expect("start member");
        zip.write_all(bytes).expect("write member");
    }
    zip.finish().expect("finish zip");
}

/// Deterministic pixel bytes: `(k * 7 + offset) % 251` (same formula as
/// `tests/fixtures/make_fixtures.py`).
pub fn pattern(n: usize, offset: usize) -> Vec<u8> {
    (0..n).map(|k| ((k * 7 + offset) % 251) as u8).collect()
}

/// One split's fixture arrays.
#[derive(Clone, Debug)]
pub struct SplitFixture {
    pub image_shape: Vec<usize>,
    pub images: Vec<u8>,
    pub label_shape: Vec<usize>,
    pub labels: Vec<u8>,
}

impl SplitFixture {
    /// `n` images of `h × w` (× `c` if given) with labels shaped `(n, 1)`.
    pub fn new(
        n: usize,
        h: usize,
        w: usize,
        c: Option<usize>,
        offset: usize,
        labels: &[u8],
    ) -> Self {
        assert_eq!(labels.len(), n);
        let mut image_shape = vec![n, h, w];
        image_shape.extend(c);
        let len = image_shape.iter().product();
        Self {
            image_shape,
            images: pattern(len, offset),
            label_shape: vec![n, 1],
            labels: labels.to_vec(),
        }
    }
}

/// The three standard splits of a small RGB dataset (4 × 5 images, non-square
/// so that height/width mix-ups show).
pub fn rgb_splits() -> [SplitFixture; 3] {
    [
        SplitFixture::new(3, 4, 5, Some(3), 0, &[0, 6, 3]),
        SplitFixture::new(2, 4, 5, Some(3), 100, &[5, 1]),
        SplitFixture::new(1, 4, 5, Some(3), 200, &[2]),
    ]
}

/// The `.npz` members for `splits` (train, val, test).
pub fn members(splits: &[SplitFixture; 3]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, s) in ["train", "val", "test"].iter().zip(splits) {
        out.push((
            format!("{name}_images.npy"),
            npy_u8(&s.image_shape, &s.images),
        ));
        out.push((
            format!("{name}_labels.npy"),
            npy_u8(&s.label_shape, &s.labels),
        ));
    }
    out
}

/// Replace the member called `name`.
pub fn replace(members: &mut [(String, Vec<u8>)], name: &str, bytes: Vec<u8>) {
    let slot = members
        .iter_mut()
        .find(|(n, _)| n == name)
        .expect("member exists");
    slot.1 = bytes;
}

/// Print an error with its whole source chain, like anyhow's `{:#}`.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 serving fixed responses by path
/// and counting requests. Unknown paths get 404.
pub struct TestServer {
    pub base: String,
    hits: Arc<AtomicUsize>,
}

impl TestServer {
    /// Serve `routes`: path → body (status 200).
    pub fn start(routes: &[(&str, &[u8])]) -> Self {
        let routes: HashMap<String, Vec<u8>> = routes
            .iter()
            .map(|(p, b)| (p.to_string(), b.to_vec()))
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Drain the headers.
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" || line == "\n" => break,
                        Ok(_) => {}
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_owned();
                let (status, body) = match routes.get(&path) {
                    Some(body) => ("200 OK", body.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
                let _ = stream.flush();
            }
        });
        Self { base, hits }
    }

    /// Full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Number of requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
