//! Decoding: 8/16-bit PNG and TIFF, intensity windows checked against numpy, channel handling,
//! rejections.
//!
//! Expected bytes were computed with python3 + numpy 2.4 (snippets in the comments); the
//! crate rounds halves away from zero, so the snippets use `np.floor(v + 0.5)`.

mod common;

use common::*;
use mammo::{Error, Intensity, decode, percentile_u16};

/// A 4×5 16-bit image with a dark pixel (0) and a saturated outlier (65535).
const OUTLIER: [u16; 20] = [
    1000, 1200, 1400, 1600, 1800, //
    2000, 2200, 2400, 2600, 2800, //
    3000, 3200, 3400, 3600, 3800, //
    4000, 4095, 0, 65535, 2500,
];

/// A 4×5 12-bit ramp: 1000 + 20 i.
fn ramp() -> Vec<u16> {
    (0..20).map(|i| 1000 + 20 * i).collect()
}

#[test]
fn png16_percentile_window_matches_numpy() {
    // x = np.array(OUTLIER, dtype=np.uint16).reshape(4, 5)
    // lo, hi = np.percentile(x, [0.5, 99.5])            # 95.0, 59698.20000000007
    // np.floor(np.clip((x.astype(float) - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.png");
    save_gray16(&path, 5, 4, &OUTLIER);
    assert_eq!(percentile_u16(&OUTLIER, 0.5), 95.0);
    assert_eq!(percentile_u16(&OUTLIER, 99.5), 59698.20000000007);
    let img = decode(&path, &Intensity::default()).unwrap();
    assert_eq!((img.height, img.width, img.channels), (4, 5, 1));
    assert_eq!(
        img.pixels,
        [
            4, 5, 6, 6, 7, 8, 9, 10, 11, 12, 12, 13, 14, 15, 16, 17, 17, 0, 255, 10
        ]
    );
}

#[test]
fn tiff16_percentile_window_matches_numpy() {
    // x = (1000 + 20 * np.arange(20)).astype(np.uint16).reshape(4, 5)
    // lo, hi = np.percentile(x, [0.5, 99.5])            # 1001.9, 1378.1
    // np.floor(np.clip((x.astype(float) - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tif");
    save_gray16(&path, 5, 4, &ramp());
    let img = decode(&path, &Intensity::default()).unwrap();
    assert_eq!((img.height, img.width, img.channels), (4, 5, 1));
    assert_eq!(
        img.pixels,
        [
            0, 12, 26, 39, 53, 66, 80, 94, 107, 121, 134, 148, 161, 175, 189, 202, 216, 229, 243,
            255
        ]
    );
    // Other percentiles: lo, hi = np.percentile(x, [5, 95])  # 1019.0, 1361.0
    let img = decode(&path, &"percentile:5,95".parse().unwrap()).unwrap();
    assert_eq!(
        img.pixels,
        [
            0, 1, 16, 31, 45, 60, 75, 90, 105, 120, 135, 150, 165, 180, 195, 210, 224, 239, 254,
            255
        ]
    );
}

#[test]
fn percentile_is_numpys_linear_percentile() {
    // v = (np.arange(1000) * 7919 % 4096).astype(np.uint16)
    // [np.percentile(v, q) for q in [0, 0.5, 1, 2.5, 25, 50, 75, 99, 99.5, 100, 33.3]]
    let v: Vec<u16> = (0..1000u32).map(|i| (i * 7919 % 4096) as u16).collect();
    let expected = [
        (0.0, 0.0),
        (0.5, 4.995),
        (1.0, 9.99),
        (2.5, 24.975),
        (25.0, 870.75),
        (50.0, 1947.5),
        (75.0, 3021.25),
        (99.0, 3879.01),
        (99.5, 3884.005),
        (100.0, 3889.0),
        (33.3, 1367.667),
    ];
    for (q, want) in expected {
        assert_eq!(percentile_u16(&v, q), want, "q = {q}");
    }
    assert!(percentile_u16(&[], 50.0).is_nan());
}

#[test]
fn fixed_window_and_none_on_16_bit() {
    // fixed: np.floor(np.clip(x.astype(float) / 4095, 0, 1) * 255 + 0.5)   (x = OUTLIER)
    // none:  np.floor(x.astype(float) / 65535 * 255 + 0.5)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.png");
    save_gray16(&path, 5, 4, &OUTLIER);
    let fixed = decode(&path, &"fixed:0,4095".parse().unwrap()).unwrap();
    assert_eq!(
        fixed.pixels,
        [
            62, 75, 87, 100, 112, 125, 137, 149, 162, 174, 187, 199, 212, 224, 237, 249, 255, 0,
            255, 156
        ]
    );
    let none = decode(&path, &Intensity::None).unwrap();
    assert_eq!(
        none.pixels,
        [
            4, 5, 5, 6, 7, 8, 9, 9, 10, 11, 12, 12, 13, 14, 15, 16, 16, 0, 255, 10
        ]
    );
}

#[test]
fn eight_bit_passes_through_unless_the_window_is_fixed() {
    // g = np.arange(0, 250, 10).reshape(5, 5)
    // fixed:50,150 -> np.floor(np.clip((g - 50) / 100, 0, 1) * 255 + 0.5)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.png");
    let g: Vec<u8> = (0..25).map(|i| i * 10).collect();
    save_gray8(&path, 5, 5, &g);
    for intensity in [
        Intensity::default(),
        Intensity::None,
        "percentile:10,90".parse().unwrap(),
    ] {
        let img = decode(&path, &intensity).unwrap();
        assert_eq!((img.height, img.width, img.channels), (5, 5, 1));
        assert_eq!(img.pixels, g, "{intensity}");
    }
    let img = decode(&path, &"fixed:50,150".parse().unwrap()).unwrap();
    assert_eq!(
        img.pixels,
        [
            0, 0, 0, 0, 0, 0, 26, 51, 77, 102, 128, 153, 179, 204, 230, 255, 255, 255, 255, 255,
            255, 255, 255, 255, 255
        ]
    );
    // As an 8-bit TIFF, the same values pass through too.
    let tif = dir.path().join("g.tif");
    save_gray8(&tif, 5, 5, &g);
    assert_eq!(decode(&tif, &Intensity::default()).unwrap().pixels, g);
}

#[test]
fn rgb_and_alpha() {
    let dir = tempfile::tempdir().unwrap();
    // RGB: kept as 3 channels, byte for byte.
    let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 13) as u8).collect();
    save_rgb8(&dir.path().join("c.png"), 3, 2, &rgb);
    let img = decode(dir.path().join("c.png"), &Intensity::default()).unwrap();
    assert_eq!((img.height, img.width, img.channels), (2, 3, 3));
    assert_eq!(img.pixels, rgb);
    // A gray image stored as RGB (equal channels everywhere): one channel, the same values.
    let gray_rgb: Vec<u8> = [0u8, 90, 200, 255].iter().flat_map(|&v| [v, v, v]).collect();
    save_rgb8(&dir.path().join("g.png"), 2, 2, &gray_rgb);
    let img = decode(dir.path().join("g.png"), &Intensity::default()).unwrap();
    assert_eq!((img.height, img.width, img.channels), (2, 2, 1));
    assert_eq!(img.pixels, [0, 90, 200, 255]);
    // RGBA: alpha dropped.
    let rgba: Vec<u8> = (0..2 * 2 * 4).map(|i| (i * 7 + 1) as u8).collect();
    save_rgba8(&dir.path().join("a.png"), 2, 2, &rgba);
    let img = decode(dir.path().join("a.png"), &Intensity::default()).unwrap();
    assert_eq!(img.channels, 3);
    let want: Vec<u8> = rgba.chunks(4).flat_map(|p| p[..3].to_vec()).collect();
    assert_eq!(img.pixels, want);
    // Gray + alpha: alpha dropped, one channel.
    save_gray_alpha8(&dir.path().join("la.png"), 2, 1, &[10, 255, 200, 0]);
    let img = decode(dir.path().join("la.png"), &Intensity::default()).unwrap();
    assert_eq!((img.channels, img.pixels.clone()), (1, vec![10, 200]));
    // 16-bit RGB: one window over all R, G, B values.
    // r = np.array([100,200,...,1100,50000], dtype=np.uint16); lo, hi = np.percentile(r, [0.5, 99.5])
    // -> 105.5, 47310.500000000015; np.floor(np.clip((r - lo) / (hi - lo), 0, 1) * 255 + 0.5)
    let rgb16: Vec<u16> = vec![
        100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 50000,
    ];
    save_rgb16(&dir.path().join("c16.png"), 2, 2, &rgb16);
    let img = decode(dir.path().join("c16.png"), &Intensity::default()).unwrap();
    assert_eq!((img.height, img.width, img.channels), (2, 2, 3));
    assert_eq!(img.pixels, [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 255]);
}

#[test]
fn constant_image_is_all_zero_not_nan() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.png");
    save_gray16(&path, 4, 3, &[1234; 12]);
    let img = decode(&path, &Intensity::default()).unwrap();
    assert_eq!(img.pixels, vec![0; 12]);
    // A fixed window still maps it: 1234 / 4095 * 255 = 76.84 -> 77.
    let img = decode(&path, &"fixed:0,4095".parse().unwrap()).unwrap();
    assert_eq!(img.pixels, vec![77; 12]);
}

/// A small bright lesion (49 of 10,000 pixels, under the 0.5 % tail) on a flat background:
/// both percentiles are the background value,
/// `np.percentile(x, [0.5, 99.5])` = `[0, 0]` for `x = zeros(100, 100); x[:7, :7] = 3000`,
/// so the window is empty; the lesion must stay visible (255), not be mapped to 0.
#[test]
fn a_degenerate_percentile_window_keeps_a_small_bright_lesion() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lesion.png");
    let mut px = vec![0u16; 100 * 100];
    for y in 0..7 {
        for x in 0..7 {
            px[y * 100 + x] = 3000;
        }
    }
    save_gray16(&path, 100, 100, &px);
    let img = decode(&path, &Intensity::default()).unwrap();
    assert_eq!(img.pixels.iter().filter(|&&v| v == 255).count(), 49);
    assert_eq!(img.pixels.iter().filter(|&&v| v == 0).count(), 100 * 100 - 49);
}

#[test]
fn intensity_parses_and_displays() {
    for s in [
        "percentile:0.5,99.5",
        "percentile:1,99",
        "fixed:0,4095",
        "fixed:-10.5,300",
        "none",
    ] {
        let i: Intensity = s.parse().unwrap();
        assert_eq!(i.to_string(), s);
    }
    assert_eq!(Intensity::default().to_string(), "percentile:0.5,99.5");
    assert_eq!(
        " Percentile ".parse::<Intensity>().unwrap(),
        Intensity::default()
    );
    assert_eq!(
        "fixed: 0 , 4095".parse::<Intensity>().unwrap(),
        Intensity::Fixed {
            low: 0.0,
            high: 4095.0
        }
    );
    for bad in [
        "",
        "percentile:5",
        "percentile:50,10",
        "percentile:-1,99",
        "percentile:1,101",
        "fixed:10,10",
        "fixed:a,b",
        "none:1",
        "window",
    ] {
        let err = bad.parse::<Intensity>().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("`{bad}`")) && msg.contains("percentile:LO,HI"),
            "{bad}: {msg}"
        );
    }
}

#[test]
fn undecodable_and_dicom_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let junk = write(&dir.path().join("junk.png"), "this is not a PNG");
    let err = decode(&junk, &Intensity::default()).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("junk.png"), "{err}");
    let missing = dir.path().join("missing.png");
    let err = decode(&missing, &Intensity::default()).unwrap_err();
    assert!(err.to_string().contains("missing.png"), "{err}");
    let dcm = write(&dir.path().join("scan.dcm"), "DICM");
    let err = decode(&dcm, &Intensity::default()).unwrap_err();
    assert!(matches!(err, Error::Dicom { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("scan.dcm")
            && msg.contains("DICOM is not read")
            && msg.contains("PNG or TIFF"),
        "{msg}"
    );
}

#[test]
fn float_tiff_is_an_unsupported_pixel_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.tif");
    image::ImageBuffer::<image::Rgb<f32>, _>::from_raw(
        2,
        1,
        vec![0.0f32, 0.5, 1.0, 0.25, 0.5, 0.75],
    )
    .unwrap()
    .save(&path)
    .unwrap();
    let err = decode(&path, &Intensity::default()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedPixelFormat { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("f.tif") && err.to_string().contains("Rgb32F"),
        "{err}"
    );
}

/// A JPEG whose EXIF orientation is 6 ("rotate 90° clockwise to display", as phones and some
/// scanners store portrait images) decodes upright, as PIL's `ImageOps.exif_transpose` gives
/// it: 16x8 stored (dark left half, bright right half) → 8x16 displayed, dark on top.
#[test]
fn exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sideways.jpg");
    let (w, h) = (16u32, 8u32);
    let px: Vec<u8> = (0..w * h).map(|i| if i % w < w / 2 { 20 } else { 230 }).collect();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode(&px, w, h, image::ExtendedColorType::L8)
        .unwrap();
    // APP1 "Exif\0\0" + little-endian TIFF header + IFD0 with one entry: 0x0112 Orientation,
    // SHORT, count 1, value 6; no next IFD. Inserted right after SOI (FF D8).
    let mut app1 = vec![0xFF, 0xE1, 0x00, 0x22];
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&[0x49, 0x49, 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00]);
    app1.extend_from_slice(&[0x01, 0x00, 0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00]);
    app1.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]);
    assert_eq!(app1.len() - 2, 0x22);
    let bytes: Vec<u8> = [&jpeg[..2], &app1[..], &jpeg[2..]].concat();
    std::fs::write(&path, bytes).unwrap();
    let img = decode(&path, &Intensity::default()).unwrap();
    assert_eq!((img.height, img.width), (16, 8), "orientation not applied");
    let mean = |rows: std::ops::Range<usize>| {
        let v: Vec<f64> = rows.flat_map(|y| (0..8).map(move |x| (y, x))).map(|(y, x)| f64::from(img.pixels[y * 8 + x])).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean(0..6) < 60.0 && mean(10..16) > 190.0, "top {} bottom {}", mean(0..6), mean(10..16));
}
