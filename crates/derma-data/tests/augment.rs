//! Augmentation: presets, the mammography guarantees, determinism, and the evaluation resize.

use derma_data::{Augment, AugmentConfig, AugmentPreset};
use derma_data::augment::{Jitter, image_rng};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn mammo_preset_never_flips_and_keeps_crops_large() {
    let aug = Augment::new(AugmentConfig::preset(AugmentPreset::Mammo), 64);
    for seed in 0..2000u64 {
        let d = aug.draw(&mut image_rng(seed, 0, seed as usize), 512, 512);
        assert!(!d.hflip && !d.vflip, "seed {seed} flipped");
        let area = d.crop_size.0 * d.crop_size.1 / (512.0 * 512.0);
        assert!((0.95..=1.0).contains(&area), "seed {seed}: crop area {area}");
        assert!(d.angle.abs() <= 7f64.to_radians() + 1e-12);
        assert!(d.translate.0.abs() <= 0.05 && d.translate.1.abs() <= 0.05);
        assert!((0.95..=1.05).contains(&d.scale));
        assert!(d.saturation == 1.0 && d.hue == 0.0, "seed {seed}: colour jitter on mammograms");
    }
}

#[test]
fn an_elongated_image_falls_back_to_a_centre_crop_of_clamped_ratio() {
    // torchvision 0.26 RandomResizedCrop.get_params(torch.zeros(1, 256, 512), scale=(0.95, 1.0),
    // ratio=(0.95, 1.05)) returns (i, j, h, w) = (0, 121, 256, 269) every time: no try fits a
    // 2:1 image, so it centre-crops at ratio 1.05 (269 = round(256 * 1.05); we keep 268.8).
    let aug = Augment::new(AugmentConfig::preset(AugmentPreset::Mammo), 64);
    for seed in 0..50 {
        let d = aug.draw(&mut image_rng(seed, 0, 0), 512, 256);
        assert_eq!(d.crop_size, (256.0 * 1.05, 256.0), "seed {seed}");
        assert_eq!(d.crop_center, (256.0, 128.0), "seed {seed}");
        // Tall (torchvision on 100x300: (97, 0, 105, 100), 105 = round(100 / 0.95)): width kept.
        let d = aug.draw(&mut image_rng(seed, 0, 1), 100, 300);
        assert_eq!(d.crop_size, (100.0, 100.0 / 0.95), "seed {seed}");
    }
    // Within the ratio range the fallback is the whole image (torchvision: `w, h = width, height`).
    let mut c = AugmentConfig::preset(AugmentPreset::Mammo);
    c.crop_scale = [1.5, 2.0]; // never fits
    let d = Augment::new(c, 64).draw(&mut image_rng(0, 0, 0), 100, 102);
    assert_eq!((d.crop_center, d.crop_size), ((50.0, 51.0), (100.0, 102.0)));
}

#[test]
fn natural_preset_flips_about_half_the_time() {
    let aug = Augment::new(AugmentConfig::preset(AugmentPreset::Natural), 28);
    let flips = (0..4000).filter(|&i| aug.draw(&mut image_rng(1, 0, i), 28, 28).hflip).count();
    // binomial(4000, 0.5): 5σ = 158
    assert!((flips as i64 - 2000).abs() < 158, "{flips} flips");
}

#[test]
fn eval_resize_of_the_same_size_is_the_identity() {
    let img: Vec<u8> = (0..28 * 28 * 3).map(|i| (i * 7 % 256) as u8).collect();
    assert_eq!(Augment::eval(28).run(&img, [28, 28, 3], 5, 3, 1), img);
}

#[test]
fn eval_upsampling_keeps_a_constant_image_constant_to_the_edges() {
    let img = vec![200u8; 8 * 8];
    let out = Augment::eval(32).run(&img, [8, 8, 1], 0, 0, 0);
    assert!(out.iter().all(|&p| p == 200), "edges darkened: {:?}", &out[..8]);
}

#[test]
fn augmentation_is_reproducible_per_seed_epoch_and_index() {
    let img: Vec<u8> = (0..32 * 32 * 3).map(|i| (i * 13 % 251) as u8).collect();
    let aug = Augment::new(AugmentConfig::preset(AugmentPreset::Natural), 24);
    let a = aug.run(&img, [32, 32, 3], 1, 2, 3);
    assert_eq!(a, aug.run(&img, [32, 32, 3], 1, 2, 3));
    assert_ne!(a, aug.run(&img, [32, 32, 3], 1, 3, 3), "another epoch draws again");
}

#[test]
fn horizontal_flip_mirrors_the_image() {
    let img: Vec<u8> = (0..16 * 16).map(|i| (i % 16 * 10) as u8).collect();
    let mut cfg = AugmentConfig::preset(AugmentPreset::None);
    cfg.hflip = 1.0;
    let out = Augment::new(cfg, 16).run(&img, [16, 16, 1], 0, 0, 0);
    for y in 0..16 {
        for x in 0..16 {
            assert_eq!(out[y * 16 + x], img[y * 16 + 15 - x]);
        }
    }
}

#[test]
fn invalid_knobs_are_named() {
    let mut cfg = AugmentConfig::preset(AugmentPreset::Mammo);
    cfg.crop_scale = [0.9, 1.2];
    assert!(cfg.validate().unwrap_err().contains("crop_scale"));
    let mut cfg = AugmentConfig::preset(AugmentPreset::Mammo);
    cfg.hflip = 2.0;
    assert!(cfg.validate().unwrap_err().contains("hflip"));
    let mut cfg = AugmentConfig::preset(AugmentPreset::Natural);
    cfg.hue = 0.7;
    assert!(cfg.validate().unwrap_err().contains("hue"));
    assert!("fancy".parse::<AugmentPreset>().unwrap_err().contains("none, natural or mammo"));
}

/// A draw with no geometric change on a `size`×`size` image and the given colour factors.
fn colour_draw(size: usize, brightness: f64, contrast: f64, saturation: f64, hue: f64) -> derma_data::augment::Draw {
    let s = size as f64;
    derma_data::augment::Draw {
        crop_center: (s / 2.0, s / 2.0),
        crop_size: (s, s),
        hflip: false,
        vflip: false,
        angle: 0.0,
        translate: (0.0, 0.0),
        scale: 1.0,
        brightness,
        contrast,
        saturation,
        hue,
        jitter_order: Jitter::LISTED,
    }
}

/// Colour jitter matches torchvision's functional ops applied in the same order:
///
/// ```python
/// import torch, torchvision.transforms.functional as F   # torchvision 0.26.0
/// px = [(i * 37 + 11) % 256 for i in range(48)]
/// img = torch.tensor(px, dtype=torch.float32).reshape(4, 4, 3).permute(2, 0, 1) / 255
/// x = F.adjust_hue(F.adjust_saturation(F.adjust_contrast(F.adjust_brightness(img, 1.2), 0.8), 1.3), 0.1)
/// (x * 255).round().permute(1, 2, 0).flatten().int().tolist()          # JITTER below
/// (F.adjust_hue(img, -0.3) * 255).round().permute(1, 2, 0).flatten().int().tolist()   # HUE
/// g = torch.tensor(px[:16], dtype=torch.float32).reshape(1, 4, 4) / 255
/// (F.adjust_contrast(F.adjust_brightness(g, 0.9), 1.25) * 255).round().flatten().int().tolist()   # GRAY
/// ```
///
/// (within 1 grey level: torchvision rounds at the end of float ops, as here, but in float32
/// on [0, 1]).
#[test]
fn colour_jitter_matches_torchvision() {
    const JITTER: [u8; 48] = [
        41, 32, 124, 147, 138, 231, 255, 117, 25, 115, 106, 198, 80, 241, 0, 82, 73, 165, 180, 191, 240, 50, 40, 133, 156, 147,
        239, 255, 121, 34, 123, 114, 207, 95, 240, 8, 91, 82, 174, 189, 207, 237, 58, 49, 141, 164, 156, 246,
    ];
    const HUE: [u8; 48] = [
        33, 85, 11, 144, 196, 122, 21, 14, 233, 110, 162, 88, 236, 17, 155, 76, 128, 54, 187, 239, 165, 42, 94, 20, 153, 205,
        131, 30, 23, 242, 119, 171, 97, 245, 26, 164, 85, 137, 63, 196, 248, 174, 51, 103, 29, 162, 214, 140,
    ];
    const GRAY: [u8; 16] = [0, 29, 70, 112, 154, 195, 237, 0, 32, 74, 115, 157, 199, 240, 0, 35];
    let px: Vec<u8> = (0..48).map(|i| ((i * 37 + 11) % 256) as u8).collect();
    let aug = Augment::eval(4);
    let close = |got: &[u8], want: &[u8], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}: values");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((i32::from(*g) - i32::from(*w)).abs() <= 1, "{what}[{i}]: {g} vs torchvision {w}\n{got:?}");
        }
    };
    close(&aug.apply(&colour_draw(4, 1.2, 0.8, 1.3, 0.1), &px, [4, 4, 3]), &JITTER, "b1.2 c0.8 s1.3 h0.1");
    close(&aug.apply(&colour_draw(4, 1.0, 1.0, 1.0, -0.3), &px, [4, 4, 3]), &HUE, "hue -0.3");
    // Grayscale: brightness and contrast apply, saturation and hue cannot.
    close(&aug.apply(&colour_draw(4, 0.9, 1.25, 1.7, 0.2), &px[..16], [4, 4, 1]), &GRAY, "gray b0.9 c1.25");
}

/// The draw's order is the order of application, checked against torchvision with the order
/// reversed (same image and factors as `colour_jitter_matches_torchvision`; the listed order
/// gives its JITTER, which differs from this by up to 27 grey levels):
///
/// ```python
/// x = F.adjust_brightness(F.adjust_contrast(F.adjust_saturation(F.adjust_hue(img, 0.1), 1.3), 0.8), 1.2)
/// (x * 255).round().permute(1, 2, 0).flatten().int().tolist()     # torchvision 0.26.0
/// ```
#[test]
fn colour_jitter_applies_in_the_drawn_order() {
    const REVERSED: [u8; 48] = [
        44, 35, 127, 151, 141, 234, 255, 124, 27, 118, 109, 201, 65, 255, 27, 85, 76, 168, 192, 183, 255, 53, 43, 136, 159,
        150, 242, 255, 132, 27, 127, 117, 210, 74, 255, 27, 94, 85, 177, 201, 191, 255, 61, 52, 144, 168, 159, 251,
    ];
    let px: Vec<u8> = (0..48).map(|i| ((i * 37 + 11) % 256) as u8).collect();
    let mut d = colour_draw(4, 1.2, 0.8, 1.3, 0.1);
    d.jitter_order = [Jitter::Hue, Jitter::Saturation, Jitter::Contrast, Jitter::Brightness];
    let got = Augment::eval(4).apply(&d, &px, [4, 4, 3]);
    assert_eq!(got.len(), REVERSED.len());
    for (i, (g, w)) in got.iter().zip(&REVERSED).enumerate() {
        assert!((i32::from(*g) - i32::from(*w)).abs() <= 1, "[{i}]: {g} vs torchvision {w}\n{got:?}");
    }
}

/// torchvision's `ColorJitter` applies its operations in `torch.randperm(4)` order: every one
/// of the 24 orders, equally often. 4,800 draws: 200 expected per order, binomial standard
/// deviation 13.9, so [140, 260] is over 4 deviations either side. With at most one
/// operation on (the `none` preset) the order stays the listed one.
#[test]
fn the_jitter_order_is_a_uniform_permutation() {
    use std::collections::HashMap;
    let aug = Augment::new(AugmentConfig::preset(AugmentPreset::Natural), 28);
    let mut rng = StdRng::seed_from_u64(7);
    let mut counts: HashMap<[Jitter; 4], usize> = HashMap::new();
    for _ in 0..4800 {
        *counts.entry(aug.draw(&mut rng, 28, 28).jitter_order).or_default() += 1;
    }
    assert_eq!(counts.len(), 24, "{counts:?}");
    assert!(counts.values().all(|&n| (140..=260).contains(&n)), "{counts:?}");
    let none = Augment::eval(28);
    assert!((0..50).all(|_| none.draw(&mut rng, 28, 28).jitter_order == Jitter::LISTED));
}

/// FNV-1a over the outputs of `Augment::run` for a spread of presets, sizes, channel counts
/// and draws (identity resizes, down- and up-sampling, rotations, crops, flips, every colour
/// operation), so that a faster implementation is checked to give the same bytes.
fn outputs_hash() -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash = (hash ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    let source = |w: usize, h: usize, c: usize| -> Vec<u8> {
        (0..w * h * c).map(|i| ((i * 2_654_435_761usize) >> 7 ^ (i / (w * c)) * 3) as u8).collect()
    };
    // The presets, and every knob far out (vertical flips, hue shifts that wrap around).
    let mut wide = AugmentConfig::preset(AugmentPreset::Natural);
    (wide.vflip, wide.hue, wide.translate, wide.scale, wide.rotation) = (0.5, 0.5, 0.2, [0.8, 1.2], 90.0);
    let configs = [AugmentPreset::None, AugmentPreset::Natural, AugmentPreset::Mammo].map(AugmentConfig::preset);
    for (w, h, c, size) in [(28, 28, 3, 28), (64, 64, 3, 28), (28, 28, 3, 64), (50, 37, 3, 32), (40, 30, 1, 48), (33, 33, 1, 33)] {
        let img = source(w, h, c);
        for config in configs.iter().chain([&wide]) {
            let aug = Augment::new(config.clone(), size);
            for position in 0..12 {
                eat(&aug.run(&img, [h, w, c], 7, 2, position));
            }
        }
        eat(&Augment::eval(size).run(&img, [h, w, c], 0, 0, 0));
    }
    hash
}

/// The outputs of the augmentation pipeline, byte for byte, as the straightforward
/// implementation of commit e944291 (f64 source points, `floor`, `f32::round`, `rem_euclid`
/// in the hue shift) produced them: printed by this test's `outputs_hash` at that commit.
#[test]
fn augmentation_outputs_are_those_of_the_reference_implementation() {
    assert_eq!(outputs_hash(), 13_107_750_140_675_185_082);
}

/// `tests/fixtures/augment_reference.txt`, written by `scripts/reference_augment.py`
/// (torchvision 0.29): name → flat `[h, w, 3]` uint8 image.
fn torchvision_geometry() -> std::collections::HashMap<String, Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/augment_reference.txt");
    std::fs::read_to_string(path)
        .expect("run scripts/reference_augment.py")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, values) = l.split_once(':').unwrap();
            (name.to_string(), values.split_whitespace().map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

/// The script's input: `(i * 37 + 11) mod 256` at flat HWC index `i`, 0 in a border band.
fn geometry_input(h: usize, w: usize, band: usize) -> Vec<u8> {
    (0..h * w * 3)
        .map(|i| {
            let (y, x) = (i / 3 / w, i / 3 % w);
            let inside = (band..h - band).contains(&y) && (band..w - band).contains(&x);
            if inside { ((i * 37 + 11) % 256) as u8 } else { 0 }
        })
        .collect()
}

/// The geometry against torchvision, every pixel within one grey level:
/// - the evaluation resize (6 → 14 and 16 → 6 px) is `F.interpolate(mode="bilinear",
///   align_corners=False)` (no antialias);
/// - a rotation by `angle` is `F.rotate(−angle)`: derma-data's angle turns clockwise on screen,
///   `F.rotate`'s counter-clockwise (both drawn from a symmetric range, so the distributions
///   are the same);
/// - rotation, translation (a fraction of the output side) and zoom together are `F.affine`
///   (whose angle turns clockwise, as here; translation × side in pixels; the same scale).
#[test]
fn geometry_matches_torchvision() {
    let reference = torchvision_geometry();
    let close = |got: &[u8], name: &str| {
        let want = &reference[name];
        assert_eq!(got.len(), want.len(), "{name}: values");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((i32::from(*g) - i32::from(*w)).abs() <= 1, "{name}[{i}]: {g} vs torchvision {w}");
        }
    };
    close(&Augment::eval(14).run(&geometry_input(6, 6, 0), [6, 6, 3], 0, 0, 0), "up_6_to_14");
    close(&Augment::eval(6).run(&geometry_input(16, 16, 0), [16, 16, 3], 0, 0, 0), "down_16_to_6");
    let banded = geometry_input(16, 16, 3);
    let draw = |angle_deg: f64, translate: (f64, f64), scale: f64| derma_data::augment::Draw {
        angle: angle_deg.to_radians(),
        translate,
        scale,
        ..colour_draw(16, 1.0, 1.0, 1.0, 0.0)
    };
    let at16 = Augment::new(AugmentConfig::preset(AugmentPreset::None), 16);
    close(&at16.apply(&draw(-10.0, (0.0, 0.0), 1.0), &banded, [16, 16, 3]), "rotate_10");
    close(&at16.apply(&draw(7.0, (1.0 / 16.0, -1.0 / 16.0), 1.05), &banded, [16, 16, 3]), "affine_7_t1m1_s105");
    // The rotation is no identity or mirror on this input: torchvision's +10° and −10° differ.
    let other_way = at16.apply(&draw(10.0, (0.0, 0.0), 1.0), &banded, [16, 16, 3]);
    let apart = other_way.iter().zip(&reference["rotate_10"]).filter(|(a, b)| (i32::from(**a) - i32::from(**b)).abs() > 1).count();
    assert!(apart > 100, "the other direction agrees at all but {apart} values: the check cannot tell the direction");
}
