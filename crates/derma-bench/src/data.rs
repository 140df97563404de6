//! The benchmark's images: synthetic ones of the benchmark size, or a MedMNIST `.npz`.

use derma_data::ImageDataset;

use crate::options::DataSource;

/// `n` RGB images of `size`×`size` with deterministic pseudo-random pixels, labels cycling
/// through `classes` classes. The pixels' values do not change the work done per image.
pub fn synthetic(n: usize, size: usize, classes: usize, seed: u64) -> ImageDataset {
    let n = n.max(1);
    let classes = classes.max(1);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let pixels: Vec<u8> = (0..n * size * size * 3)
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect();
    let labels = (0..n).map(|i| i % classes).collect();
    ImageDataset::new(pixels, labels, [size, size, 3], class_names(classes)).expect("sizes agree by construction")
}

/// The training split of a MedMNIST-layout `.npz` (any image size: the augmentation resizes
/// it to the benchmark size). It has at least `classes` classes, more if its labels say so.
pub fn npz(path: &std::path::Path, classes: usize) -> anyhow::Result<ImageDataset> {
    let arrays = medmnist::read_npz(path).map_err(|e| anyhow::anyhow!("--data npz:{}: {e}", path.display()))?;
    let split = arrays.train;
    if split.len == 0 {
        anyhow::bail!("--data npz:{}: the train split is empty", path.display());
    }
    let k = split.labels.iter().map(|&l| l as usize + 1).max().unwrap_or(1).max(classes);
    ImageDataset::new(
        split.images,
        split.labels.iter().map(|&l| l as usize).collect(),
        [split.height, split.width, split.channels],
        class_names(k),
    )
    .map_err(|e| anyhow::anyhow!("--data npz:{}: {e}", path.display()))
}

/// The dataset for one image size: synthetic images are made at that size.
pub fn load(source: &DataSource, size: usize, synthetic_images: usize, classes: usize, seed: u64) -> anyhow::Result<ImageDataset> {
    match source {
        DataSource::Synthetic => Ok(synthetic(synthetic_images, size, classes, seed)),
        DataSource::Npz(path) => npz(path, classes),
    }
}

fn class_names(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("class{i}")).collect()
}
