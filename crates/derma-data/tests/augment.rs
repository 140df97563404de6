//! Augmentation: presets, the mammography guarantees, determinism, and the evaluation resize.

use derma_data::{Augment, AugmentConfig, AugmentPreset};
use derma_data::augment::image_rng;

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
    }
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
    assert!("fancy".parse::<AugmentPreset>().unwrap_err().contains("none, natural or mammo"));
}
