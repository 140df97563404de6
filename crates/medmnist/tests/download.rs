//! Verified downloads against a local HTTP server.

mod common;

use std::path::Path;

use common::{TestServer, chain};
use medmnist::{Checksum, Error, Fetcher, ImageSize, Remote, download_verified};

/// The served file.
const GOOD: &[u8] = b"abc";
/// MD5 of `b"abc"`: RFC 1321 appendix A.5 test suite; also `printf 'abc' | md5sum`.
const GOOD_MD5: &str = "900150983cd24fb0d6963f7d28e17f72";
/// MD5 of `b"message digest"`: RFC 1321 appendix A.5; also `printf 'message digest' | md5sum`.
const OTHER_MD5: &str = "f96b697d7cb7938d525a2f31aaf161d0";

fn remote(server: &TestServer, path: &str, md5: &str) -> Remote {
    Remote {
        url: server.url(path),
        checksum: Checksum::md5(md5).expect("valid md5"),
        file_name: "data.npz".to_owned(),
    }
}

fn fetcher(root: &Path) -> Fetcher {
    Fetcher::new(root).with_progress(false)
}

/// Names of all entries in `dir` (to catch stray `.part` files).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn good_file_downloads_and_verifies() {
    let server = TestServer::start(&[("/data.npz", GOOD)]);
    let root = tempfile::tempdir().expect("tempdir");
    let cache = root.path().join("nested/cache"); // created on demand
    let path = fetcher(&cache)
        .fetch_remote(&remote(&server, "/data.npz", GOOD_MD5))
        .expect("download");
    assert_eq!(path, cache.join("data.npz"));
    assert_eq!(std::fs::read(&path).expect("read"), GOOD);
    assert_eq!(server.hits(), 1);
    assert_eq!(entries(&cache), ["data.npz"]);
}

#[test]
fn wrong_bytes_are_discarded_with_a_clear_error() {
    let server = TestServer::start(&[("/data.npz", b"abd")]);
    let root = tempfile::tempdir().expect("tempdir");
    let r = remote(&server, "/data.npz", GOOD_MD5);
    let err = fetcher(root.path())
        .fetch_remote(&r)
        .expect_err("checksum mismatch");
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(GOOD_MD5), "{msg}");
    assert!(msg.contains(&r.url), "{msg}");
    // Placing such a file in the cache by hand would not help (the cache is checked too):
    // the message points to giving the file directly.
    assert!(!msg.contains("place it at") && msg.contains("--npz FILE"), "{msg}");
    assert!(
        msg.contains(&root.path().join("data.npz").display().to_string()),
        "{msg}"
    );
    assert_eq!(
        entries(root.path()),
        Vec::<String>::new(),
        "no file and no .part file may remain"
    );
}

#[test]
fn corrupt_cached_file_is_replaced() {
    let server = TestServer::start(&[("/data.npz", GOOD)]);
    let root = tempfile::tempdir().expect("tempdir");
    let cached = root.path().join("data.npz");
    std::fs::write(&cached, b"stale").expect("write");
    let path = fetcher(root.path())
        .fetch_remote(&remote(&server, "/data.npz", GOOD_MD5))
        .expect("re-download");
    assert_eq!(path, cached);
    assert_eq!(server.hits(), 1);
    assert_eq!(std::fs::read(&cached).expect("read"), GOOD);
    assert_eq!(entries(root.path()), ["data.npz"]);
}

#[test]
fn good_cached_file_makes_no_request() {
    let server = TestServer::start(&[("/data.npz", b"server must not be asked")]);
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("data.npz"), GOOD).expect("write");
    for offline in [false, true] {
        let f = fetcher(root.path()).with_offline(offline);
        let path = f
            .fetch_remote(&remote(&server, "/data.npz", GOOD_MD5))
            .expect("cached");
        assert_eq!(std::fs::read(path).expect("read"), GOOD);
    }
    assert_eq!(server.hits(), 0);
}

#[test]
fn offline_missing_file_says_where_to_put_it() {
    let server = TestServer::start(&[("/data.npz", GOOD)]);
    let root = tempfile::tempdir().expect("tempdir");
    let r = remote(&server, "/data.npz", GOOD_MD5);
    let err = fetcher(root.path())
        .with_offline(true)
        .fetch_remote(&r)
        .expect_err("offline");
    assert!(matches!(err, Error::OfflineMissing { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&r.url), "{msg}");
    assert!(
        msg.contains(&root.path().join("data.npz").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains(GOOD_MD5), "{msg}");
    assert_eq!(server.hits(), 0);
}

#[test]
fn offline_corrupt_cached_file_is_an_error_and_kept() {
    let server = TestServer::start(&[("/data.npz", GOOD)]);
    let root = tempfile::tempdir().expect("tempdir");
    let cached = root.path().join("data.npz");
    std::fs::write(&cached, b"message digest").expect("write");
    let r = remote(&server, "/data.npz", GOOD_MD5);
    let err = fetcher(root.path())
        .with_offline(true)
        .fetch_remote(&r)
        .expect_err("corrupt");
    assert!(matches!(err, Error::OfflineCorrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(GOOD_MD5) && msg.contains(OTHER_MD5), "{msg}");
    assert!(
        msg.contains(&r.url) && msg.contains(&cached.display().to_string()),
        "{msg}"
    );
    assert!(!msg.contains("place it at") && msg.contains("--npz FILE"), "{msg}");
    assert_eq!(server.hits(), 0);
    assert_eq!(std::fs::read(&cached).expect("read"), b"message digest");
}

#[test]
fn http_404_is_a_clear_error() {
    let server = TestServer::start(&[("/data.npz", GOOD)]);
    let root = tempfile::tempdir().expect("tempdir");
    let r = remote(&server, "/missing.npz", GOOD_MD5);
    let err = fetcher(root.path()).fetch_remote(&r).expect_err("404");
    assert!(matches!(&err, Error::DownloadFailed { source, .. } if matches!(**source, Error::HttpStatus { .. })), "{}", chain(&err));
    // The chain has the status; the message says how to install the file by hand.
    let msg = chain(&err);
    assert!(msg.contains("404") && msg.contains(&r.url), "{msg}");
    assert!(msg.contains(GOOD_MD5) && msg.contains(&root.path().join(&r.file_name).display().to_string()), "{msg}");
    assert_eq!(server.hits(), 1);
    assert_eq!(entries(root.path()), Vec::<String>::new());
}

#[test]
fn unreachable_server_names_the_url() {
    // Bind then drop a listener so that the port is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}/data.npz");
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("data.npz");
    let err = download_verified(&url, &dest, &Checksum::md5(GOOD_MD5).expect("md5"), false)
        .expect_err("refused");
    assert!(matches!(&err, Error::DownloadFailed { source, .. } if matches!(**source, Error::Http { .. })), "{}", chain(&err));
    let msg = err.to_string();
    assert!(msg.contains(&url) && msg.contains(GOOD_MD5) && msg.contains(&dest.display().to_string()), "{msg}");
    assert!(!dest.exists());
    // Into a cache folder that does not exist yet: the folders it created go again.
    let deep = dir.path().join("cache/medmnist/data.npz");
    assert!(download_verified(&url, &deep, &Checksum::md5(GOOD_MD5).expect("md5"), false).is_err());
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "an empty cache folder was left");
}

/// A partial download a killed process left (`.<name>.part-<pid>`, unwritten for 10 minutes)
/// is removed by the next download of that file; one still being written (fresh), or of
/// another file, stays.
#[test]
fn a_killed_downloads_partial_file_is_removed_by_the_next() {
    let server = TestServer::start(&[("/x", GOOD)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for (name, modified) in [(".data.npz.part-4242", Some(old)), (".data.npz.part-4343", None), (".other.npz.part-4242", Some(old))] {
        let f = std::fs::File::create(dir.path().join(name)).expect("create");
        if let Some(t) = modified {
            f.set_modified(t).expect("set mtime");
        }
    }
    download_verified(&server.url("/x"), &dir.path().join("data.npz"), &Checksum::md5(GOOD_MD5).expect("md5"), false).expect("ok");
    assert_eq!(entries(dir.path()), [".data.npz.part-4343", ".other.npz.part-4242", "data.npz"]);
}

#[test]
fn download_verified_replaces_existing_destination() {
    let server = TestServer::start(&[("/x", GOOD)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("weights.bin");
    std::fs::write(&dest, b"old").expect("write");
    download_verified(
        &server.url("/x"),
        &dest,
        &Checksum::md5(GOOD_MD5).expect("md5"),
        false,
    )
    .expect("ok");
    assert_eq!(std::fs::read(&dest).expect("read"), GOOD);

    // A failed verification leaves the existing destination untouched.
    let err = download_verified(
        &server.url("/x"),
        &dest,
        &Checksum::md5(OTHER_MD5).expect("md5"),
        false,
    )
    .expect_err("mismatch");
    assert!(
        err.to_string().contains(OTHER_MD5) && err.to_string().contains(GOOD_MD5),
        "{err}"
    );
    assert_eq!(std::fs::read(&dest).expect("read"), GOOD);
    assert_eq!(entries(dir.path()), ["weights.bin"]);
}

#[test]
fn offline_load_of_dermamnist_points_at_zenodo() {
    let root = tempfile::tempdir().expect("tempdir");
    let f = fetcher(root.path()).with_offline(true);
    let err = medmnist::load("dermamnist", ImageSize::Px64, &f).expect_err("nothing cached");
    let msg = err.to_string();
    assert!(
        msg.contains("https://zenodo.org/records/10519652/files/dermamnist_64.npz?download=1"),
        "{msg}"
    );
    assert!(msg.contains("b70a2f5635c6199aeaa28c31d7202e1f"), "{msg}");
    assert!(
        msg.contains(&root.path().join("dermamnist_64.npz").display().to_string()),
        "{msg}"
    );

    let err = medmnist::load("nosuchmnist", ImageSize::Px28, &f).expect_err("unknown");
    assert!(matches!(err, Error::UnknownDataset { .. }), "{err}");
}
