//! Resizing: output shapes, what each fit keeps, padding, area-aware downscaling, options.

use mammo::{Error, Fit, Image, resize};

fn gray(height: usize, width: usize, f: impl Fn(usize, usize) -> u8) -> Image {
    let mut pixels = Vec::with_capacity(height * width);
    for y in 0..height {
        for x in 0..width {
            pixels.push(f(y, x));
        }
    }
    Image {
        pixels,
        height,
        width,
        channels: 1,
    }
}

fn at(img: &Image, y: usize, x: usize) -> u8 {
    img.pixels[(y * img.width + x) * img.channels]
}

/// 20 rows × 60 columns: left third 10, middle third 200, right third 90.
fn thirds() -> Image {
    gray(20, 60, |_, x| match x / 20 {
        0 => 10,
        1 => 200,
        _ => 90,
    })
}

#[test]
fn every_fit_gives_a_square_of_the_requested_size() {
    for (h, w) in [(20, 60), (60, 20), (37, 37), (5, 3), (300, 700), (1, 9)] {
        let img = gray(h, w, |y, x| ((y * 7 + x * 3) % 256) as u8);
        for fit in [Fit::Crop, Fit::Pad, Fit::Stretch] {
            for size in [1, 16, 33] {
                let out = resize(&img, size, fit).unwrap();
                assert_eq!(
                    (out.height, out.width, out.channels, out.pixels.len()),
                    (size, size, 1, size * size),
                    "{h}x{w} {fit} {size}"
                );
            }
        }
    }
    let rgb = Image {
        pixels: vec![7; 10 * 4 * 3],
        height: 10,
        width: 4,
        channels: 3,
    };
    let out = resize(&rgb, 8, Fit::Pad).unwrap();
    assert_eq!((out.channels, out.pixels.len()), (3, 8 * 8 * 3));
    assert!(matches!(resize(&rgb, 0, Fit::Crop), Err(Error::ZeroSize)));
}

#[test]
fn crop_keeps_the_centre() {
    // Shorter side (20) is already the size: no resampling, the centre 20 columns are cut out
    // at offset (60 - 20) / 2 = 20: exactly the middle third.
    let out = resize(&thirds(), 20, Fit::Crop).unwrap();
    assert_eq!(out.pixels, vec![200; 400]);
    // Tall image: rows are cropped instead.
    let tall = gray(60, 20, |y, _| if (20..40).contains(&y) { 200 } else { 0 });
    assert_eq!(resize(&tall, 20, Fit::Crop).unwrap().pixels, vec![200; 400]);
    // Downscaled: 100x50 -> 50x25, rows cropped at round(25 / 2) = round(12.5) = 12. The bright
    // centre square (source rows 40..60, columns 15..35) lands at rows 8..18, columns 7..18;
    // the top and bottom rows of the source are cut off.
    let tall = gray(100, 50, |y, x| {
        if (40..60).contains(&y) && (15..35).contains(&x) {
            255
        } else {
            0
        }
    });
    let out = resize(&tall, 25, Fit::Crop).unwrap();
    assert_eq!(
        (at(&out, 12, 12), at(&out, 9, 9), at(&out, 16, 16)),
        (255, 255, 255)
    );
    for (y, x) in [
        (0, 0),
        (0, 24),
        (24, 0),
        (24, 24),
        (5, 12),
        (21, 12),
        (12, 4),
        (12, 20),
    ] {
        assert_eq!(at(&out, y, x), 0, "({y},{x})");
    }
    // Odd margins round halves to even (Python's `round`, as torchvision's CenterCrop):
    // 41 columns -> offset round(21 / 2) = round(10.5) = 10; 43 -> round(11.5) = 12.
    // (Floor would give 10 and 11, rounding halves up 11 and 12.)
    for (width, offset) in [(41, 10), (43, 12)] {
        let odd = gray(20, width, |_, x| x as u8);
        let out = resize(&odd, 20, Fit::Crop).unwrap();
        assert_eq!(at(&out, 0, 0), offset as u8, "width {width}");
        assert_eq!(at(&out, 5, 19), offset as u8 + 19, "width {width}");
    }
}

#[test]
fn pad_keeps_everything_with_black_borders() {
    // 20x60 -> longer side 60 to 20, shorter 20*20/60 = 6 rows, placed at row (20 - 6) / 2 = 7.
    let out = resize(&thirds(), 20, Fit::Pad).unwrap();
    for y in 0..20 {
        for x in 0..20 {
            let v = at(&out, y, x);
            if (7..13).contains(&y) {
                assert!(v >= 10, "content at ({y},{x}) = {v}");
            } else {
                assert_eq!(v, 0, "border at ({y},{x})");
            }
        }
    }
    // The whole width is kept: left columns come from the left third, right from the right.
    assert!((8..=12).contains(&at(&out, 10, 0)), "{}", at(&out, 10, 0));
    assert_eq!(at(&out, 10, 10), 200);
    assert!(
        (88..=92).contains(&at(&out, 10, 19)),
        "{}",
        at(&out, 10, 19)
    );
    // Tall: columns are padded; RGB borders are black in every channel.
    let tall = Image {
        pixels: vec![50; 30 * 10 * 3],
        height: 30,
        width: 10,
        channels: 3,
    };
    let out = resize(&tall, 15, Fit::Pad).unwrap(); // 15 rows x 5 columns at column 5
    for y in 0..15 {
        for x in 0..15 {
            let px = &out.pixels[(y * 15 + x) * 3..(y * 15 + x) * 3 + 3];
            let want = if (5..10).contains(&x) {
                [50; 3]
            } else {
                [0; 3]
            };
            assert_eq!(px, want, "({y},{x})");
        }
    }
}

#[test]
fn stretch_keeps_everything_without_borders() {
    let out = resize(&thirds(), 20, Fit::Stretch).unwrap();
    for y in 0..20 {
        assert!((10..=12).contains(&at(&out, y, 0)));
        assert_eq!(at(&out, y, 10), 200);
        assert!((88..=92).contains(&at(&out, y, 19)));
    }
}

#[test]
fn downscaling_averages_over_the_area() {
    // A one-pixel checkerboard shrunk 4x: an area-aware filter gives mid-grey everywhere;
    // plain bilinear sampling (2 taps) would give 0 or 255.
    let board = gray(64, 64, |y, x| if (x + y) % 2 == 0 { 0 } else { 255 });
    let out = resize(&board, 16, Fit::Stretch).unwrap();
    for &v in &out.pixels {
        assert!((120..=135).contains(&v), "{v}");
    }
}

#[test]
fn fit_parses_and_displays() {
    for (s, f) in [
        ("crop", Fit::Crop),
        ("pad", Fit::Pad),
        ("stretch", Fit::Stretch),
    ] {
        assert_eq!(s.parse::<Fit>().unwrap(), f);
        assert_eq!(f.to_string(), s);
    }
    assert_eq!(" PAD ".parse::<Fit>().unwrap(), Fit::Pad);
    assert_eq!(Fit::default(), Fit::Crop);
    let msg = "letterbox".parse::<Fit>().unwrap_err().to_string();
    assert!(
        msg.contains("`letterbox`") && msg.contains("crop, pad or stretch"),
        "{msg}"
    );
}
