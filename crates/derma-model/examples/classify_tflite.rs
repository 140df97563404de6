//! ImageNet classification with the TF-lite MobileNetV2 weights converted by
//! `scripts/convert_tflite.py`, compared with the TF-lite interpreter.
//!
//! ```text
//! python3 scripts/convert_tflite.py ../shared/weights/mobilenet_v2_1.0_224_quant.tflite \
//!     weights/mobilenet_v2_tflite.safetensors
//! cargo run --release --no-default-features -p derma-model --example classify_tflite -- \
//!     weights/mobilenet_v2_tflite.safetensors [tests/fixtures/tflite]
//! ```
//!
//! The fixture directory holds `check.json` (written by `convert_tflite.py --verify`: per image,
//! the quantized interpreter's top-5 and the numpy float forward's top-5 with logits) and each
//! image as raw `NAME.rgb` (224 * 224 * 3 uint8, HWC, RGB). The input normalisation and padding
//! come from the safetensors metadata (`minus_one_to_one`: x / 127.5 - 1; `tf_same`), the model
//! keeps all 1001 classes (index 0 = background). Prints the top-5 per image and exits with an
//! error when a top-1 differs from the interpreter's.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use derma_model::{MobileNetV2Config, load_torchvision, weight_conventions};

const SIZE: usize = 224;
const CLASSES: usize = 1001;

fn indices(v: &serde_json::Value) -> Vec<usize> {
    v.as_array().map_or(vec![], |a| {
        a.iter()
            .filter_map(|x| x.as_u64().map(|x| x as usize))
            .collect()
    })
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .map_or(vec![], |a| a.iter().filter_map(|x| x.as_f64()).collect())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(weights) = args.first().map(PathBuf::from) else {
        bail!(
            "usage: classify_tflite WEIGHTS.safetensors [FIXTURE_DIR (default tests/fixtures/tflite)]"
        );
    };
    let dir = args.get(1).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tflite")
    });
    let check_path = dir.join("check.json");
    let check: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&check_path)
            .with_context(|| format!("reading {}", check_path.display()))?,
    )
    .with_context(|| format!("parsing {}", check_path.display()))?;

    let (norm, padding) = weight_conventions(&weights)?;
    println!(
        "{}: input_norm {norm:?}, padding {padding:?}",
        weights.display()
    );
    let device = Device::flex();
    let model = MobileNetV2Config::new(CLASSES)
        .with_padding(padding)
        .init(&device);
    let model = load_torchvision(model, &weights, true)?.valid();

    let images = check["images"]
        .as_array()
        .context("check.json has no `images`")?;
    let affine = norm.affine();
    let mut pixels = Vec::with_capacity(images.len() * 3 * SIZE * SIZE);
    for image in images {
        let file = dir.join(image["file"].as_str().context("image without `file`")?);
        let rgb = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        if rgb.len() != SIZE * SIZE * 3 {
            bail!(
                "{}: {} bytes, expected 224*224*3",
                file.display(),
                rgb.len()
            );
        }
        // HWC u8 -> CHW f32, normalised as the weights expect.
        for (c, (scale, shift)) in affine.iter().enumerate() {
            pixels.extend(
                rgb[c..]
                    .iter()
                    .step_by(3)
                    .map(|&v| v as f32 * scale + shift),
            );
        }
    }
    let n = images.len();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [n, 3, SIZE, SIZE]), &device);
    let start = std::time::Instant::now();
    let logits = model.forward(x); // [n, 1001]
    let probs: Vec<f32> = softmax(logits.clone(), 1)
        .into_data()
        .try_into_vec()
        .unwrap();
    let logits: Vec<f32> = logits.into_data().try_into_vec().unwrap();
    println!(
        "forward of {n} images: {:.2} s\n",
        start.elapsed().as_secs_f64()
    );

    println!(
        "| image | tflite top-1 (prob) | numpy float top-1 (prob) | Rust top-1 (prob) | Rust top-5 | max abs logit diff Rust vs numpy (numpy top-5) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut disagreements = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let name = image["name"].as_str().unwrap_or("?");
        let (l, p) = (
            &logits[i * CLASSES..(i + 1) * CLASSES],
            &probs[i * CLASSES..(i + 1) * CLASSES],
        );
        let mut order: Vec<usize> = (0..CLASSES).collect();
        order.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        let top5 = &order[..5];
        let tfl = indices(&image["tflite"]["top5"]);
        let tfl_p = floats(&image["tflite"]["probs"]);
        let flt = indices(&image["float"]["top5"]);
        let flt_p = floats(&image["float"]["probs"]);
        let flt_l = floats(&image["float"]["logits"]);
        let max_diff = flt
            .iter()
            .zip(&flt_l)
            .map(|(&k, &v)| (l[k] as f64 - v).abs())
            .fold(0.0, f64::max);
        // Class names, when check.json has them (`--labels`), for the classes it lists.
        let label = |k: usize| {
            ["tflite", "float"]
                .iter()
                .find_map(|src| {
                    let pos = indices(&image[src]["top5"]).iter().position(|&j| j == k)?;
                    image[src]["labels"][pos].as_str().map(|s| format!(" {s}"))
                })
                .unwrap_or_default()
        };
        let first = |v: &[usize]| v.first().copied().unwrap_or(usize::MAX);
        println!(
            "| {name} | {}{} ({:.3}) | {} ({:.3}) | {}{} ({:.3}) | {:?} | {max_diff:.2e} |",
            first(&tfl),
            label(first(&tfl)),
            tfl_p.first().copied().unwrap_or(f64::NAN),
            first(&flt),
            flt_p.first().copied().unwrap_or(f64::NAN),
            top5[0],
            label(top5[0]),
            p[top5[0]],
            top5,
        );
        if tfl.first() != Some(&top5[0]) {
            disagreements.push(format!(
                "{name}: Rust top-1 {} != interpreter top-1 {:?}",
                top5[0],
                tfl.first()
            ));
        }
    }
    println!(
        "\n(class indices of the 1001-way output: 0 = background, ImageNet-1k class = index - 1)"
    );
    if !disagreements.is_empty() {
        bail!(
            "top-1 differs from the TF-lite interpreter:\n  {}",
            disagreements.join("\n  ")
        );
    }
    println!("top-1 agrees with the TF-lite interpreter on all {n} images");
    Ok(())
}
