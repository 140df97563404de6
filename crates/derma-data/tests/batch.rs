//! Batch assembly: per-draw augmentation seeds, the loader's order, planar normalisation.

use derma_data::batch::assemble;
use derma_data::{Augment, AugmentConfig, AugmentPreset, ImageDataset, Loader, LoaderConfig, Normalize};

/// `n` random-looking 16x16 RGB images, labels `i % 2`.
fn dataset(n: usize, channels: usize) -> ImageDataset {
    let per = 16 * 16 * channels;
    let pixels: Vec<u8> = (0..n * per).map(|i| ((i * 7919 + i / 13) % 251) as u8).collect();
    ImageDataset::new(pixels, (0..n).map(|i| i % 2).collect(), [16, 16, channels], vec!["a".into(), "b".into()]).unwrap()
}

fn config(augment: Augment, normalize: Normalize, batch_size: usize) -> LoaderConfig {
    LoaderConfig { batch_size, prefetch: 2, augment, normalize, seed: 7, epoch: 3 }
}

const IDENTITY: Normalize = Normalize { affine: [(1.0, 0.0); 3], out_channels: 3 };

fn images(pixels: &[f32], n: usize) -> Vec<&[f32]> {
    pixels.chunks(pixels.len() / n).collect()
}

/// The weighted sampler and hard-example mining draw with replacement: every copy of an image
/// in one epoch must be its own augmented view (they were identical when the seed was the
/// dataset index), within a batch and across batches, and the loader's batches are exactly
/// `assemble` at their position.
#[test]
fn repeated_draws_of_one_image_are_augmented_differently() {
    let ds = dataset(2, 3);
    let cfg = config(Augment::new(AugmentConfig::preset(AugmentPreset::Natural), 16), IDENTITY, 3);
    let batch = assemble(&ds, &[1, 1, 1], 0, &cfg);
    let views = images(&batch.pixels, 3);
    assert!(views[0] != views[1] && views[1] != views[2] && views[0] != views[2], "identical augmentations of one image");

    let order = vec![1, 1, 1, 1, 0, 1];
    let loaded: Vec<_> = Loader::spawn(&ds, order.clone(), cfg.clone()).collect();
    assert_eq!(loaded.len(), 2);
    let all: Vec<&[f32]> = loaded.iter().flat_map(|b| images(&b.pixels, b.labels.len())).collect();
    for i in 0..6 {
        for j in 0..i {
            if order[i] == order[j] {
                assert_ne!(all[i], all[j], "draws {j} and {i} of image {} are identical", order[i]);
            }
        }
    }
    assert_eq!(loaded[0].pixels, assemble(&ds, &order[..3], 0, &cfg).pixels);
    assert_eq!(loaded[1].pixels, assemble(&ds, &order[3..], 3, &cfg).pixels);
    // Without augmentation every draw of an image is the image.
    let plain = assemble(&ds, &[1, 1], 0, &config(Augment::eval(16), IDENTITY, 2));
    let plain = images(&plain.pixels, 2);
    assert_eq!(plain[0], plain[1]);
}

/// Order, labels, indices and the short last batch.
#[test]
fn loader_keeps_the_order_and_the_last_short_batch() {
    let ds = dataset(7, 3);
    let order = vec![6, 2, 5, 0, 1, 4, 3];
    let batches: Vec<_> = Loader::spawn(&ds, order.clone(), config(Augment::eval(16), IDENTITY, 3)).collect();
    assert_eq!(batches.iter().map(|b| b.shape[0]).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(batches.iter().flat_map(|b| b.indices.clone()).collect::<Vec<_>>(), order);
    let labels: Vec<i64> = batches.iter().flat_map(|b| b.labels.clone()).collect();
    assert_eq!(labels, order.iter().map(|&i| (i % 2) as i64).collect::<Vec<_>>());
    assert_eq!(batches[0].shape, [3, 3, 16, 16]);
}

/// `[batch, c, h, w]` planar output of `x * scale[c] + shift[c]`; grayscale replicated to a
/// 3-channel stem; RGB averaged (mean of the channels, then the mean affine) for a 1-channel
/// stem.
#[test]
fn normalisation_is_planar_and_adapts_the_channels() {
    // torchvision's ImageNet normalisation as `x/255 - mean) / std` = x * (1/(255 std)) - mean/std.
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let affine: [(f32, f32); 3] = std::array::from_fn(|c| (1.0 / (255.0 * std[c]), -mean[c] / std[c]));
    let rgb = dataset(1, 3);
    let b = assemble(&rgb, &[0], 0, &config(Augment::eval(16), Normalize { affine, out_channels: 3 }, 1));
    let px = rgb.image(0);
    for (y, x, c) in [(0, 0, 0), (3, 5, 1), (15, 15, 2), (8, 1, 2)] {
        let want = (px[(y * 16 + x) * 3 + c] as f32 / 255.0 - mean[c]) / std[c];
        let got = b.pixels[c * 256 + y * 16 + x];
        assert!((got - want).abs() < 1e-5, "({y},{x},{c}): {got} vs {want}");
    }
    let gray = dataset(1, 1);
    let b = assemble(&gray, &[0], 0, &config(Augment::eval(16), Normalize { affine, out_channels: 3 }, 1));
    for c in 0..3 {
        let want = (gray.image(0)[37] as f32 / 255.0 - mean[c]) / std[c];
        assert!((b.pixels[c * 256 + 37] - want).abs() < 1e-5, "channel {c}");
    }
    let b = assemble(&rgb, &[0], 0, &config(Augment::eval(16), Normalize { affine, out_channels: 1 }, 1));
    assert_eq!(b.shape, [1, 1, 16, 16]);
    let p = &px[37 * 3..37 * 3 + 3];
    let m = p.iter().map(|&v| v as f32).sum::<f32>() / 3.0;
    let (s, t) = (affine.iter().map(|a| a.0).sum::<f32>() / 3.0, affine.iter().map(|a| a.1).sum::<f32>() / 3.0);
    assert!((b.pixels[37] - (m * s + t)).abs() < 1e-5);
}

/// `take_images` uploads the same tensor as `images` without copying the pixels on the host:
/// the buffer moves into the tensor (the batch's `pixels` are empty after it, its labels and
/// indices kept), and a second take is refused rather than uploading an empty batch.
#[test]
fn taking_the_images_uploads_what_a_copy_uploads() {
    use burn::prelude::{Device, Tensor};
    let device = Device::flex();
    let ds = dataset(5, 3);
    let mut batch = assemble(&ds, &[4, 0, 3], 0, &config(Augment::eval(16), IDENTITY, 3));
    let copied: Tensor<4> = batch.images(&device);
    let taken = batch.take_images(&device);
    assert_eq!(taken.dims(), [3, 3, 16, 16]);
    assert_eq!(taken.into_data().try_to_vec::<f32>().unwrap(), copied.into_data().try_to_vec::<f32>().unwrap());
    assert!(batch.pixels.is_empty());
    assert_eq!((batch.labels.clone(), batch.indices.clone()), (vec![0, 0, 1], vec![4, 0, 3]));
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batch.take_images(&device)));
    assert!(again.is_err(), "a second take uploaded an empty batch");
}
