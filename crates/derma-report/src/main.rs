//! `derma-report RUN_DIR...`: (re)writes the plots, `report.md` and `report.html` of finished
//! run folders from their files. The images are not in a run folder, so the error gallery
//! shows the thumbnails the training run left in `gallery/` for the same selection, or lists
//! the items without thumbnails when there are none.
//!
//! `derma-report --compare RUN_A RUN_B [--resamples N] [--seed S] [--out FILE.md]`: the two
//! runs' test figures compared paired ([`derma_report::compare`]), printed as Markdown and
//! written to `FILE.md` if given.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: derma-report RUN_DIR...  (re)writes plots/, report.md and report.html of each run folder
       derma-report --compare RUN_A RUN_B [--resamples N] [--seed S] [--out FILE.md]
                    B against A on the same test images: differences, 95 % intervals, paired tests";

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.iter().any(|d| d.as_os_str() == "-h" || d.as_os_str() == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.first().is_some_and(|a| a.as_os_str() == "--compare") {
        return match compare(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let dirs = args;
    if dirs.is_empty() || dirs.iter().any(|d| d.to_str().is_some_and(|s| s.starts_with('-'))) {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    }
    let mut status = ExitCode::SUCCESS;
    for dir in &dirs {
        if !dir.is_dir() {
            let what = if dir.exists() { "is a file" } else { "no such folder" };
            eprintln!("error: {}: {what} (expected a derma-train run folder)", dir.display());
            status = ExitCode::FAILURE;
            continue;
        }
        match derma_report::write_report(dir, &derma_report::ReportOptions::default(), None) {
            Ok(files) => {
                println!("{}: {}", dir.display(), files.markdown.display());
                for note in &files.notes {
                    println!("  note: {note}");
                }
            }
            Err(e) => {
                eprintln!("error: {}: {e}", dir.display());
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}

/// `--compare RUN_A RUN_B [--resamples N] [--seed S] [--out FILE.md]`.
fn compare(args: &[PathBuf]) -> Result<(), String> {
    let mut runs = Vec::new();
    let mut options = derma_report::CompareOptions::default();
    let mut out: Option<PathBuf> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        let mut value = |flag: &str, expected: &str| -> Result<String, String> {
            rest.next().map(|v| v.to_string_lossy().into_owned()).ok_or_else(|| format!("{flag} needs a value ({expected})"))
        };
        match text.as_ref() {
            "--resamples" => {
                let v = value("--resamples", "a number of bootstrap resamples, at least 100")?;
                options.resamples = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 100)
                    .ok_or_else(|| format!("--resamples `{v}`: expected a number of bootstrap resamples, at least 100"))?;
            }
            "--seed" => {
                let v = value("--seed", "a non-negative integer")?;
                options.seed = v.parse().map_err(|_| format!("--seed `{v}`: expected a non-negative integer"))?;
            }
            "--out" => out = Some(PathBuf::from(value("--out", "a Markdown file to write")?)),
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`\n{USAGE}")),
            _ => runs.push(arg.clone()),
        }
    }
    let [a, b] = &runs[..] else {
        return Err(format!("--compare takes two run folders, got {}\n{USAGE}", runs.len()));
    };
    let read = |dir: &Path| {
        if !dir.is_dir() {
            let what = if dir.exists() { "is a file" } else { "no such folder" };
            return Err(format!("{}: {what} (expected a derma-train run folder)", dir.display()));
        }
        derma_report::Run::read(dir).map_err(|e| e.to_string())
    };
    let comparison = derma_report::compare(&read(a)?, &read(b)?, options).map_err(|e| e.to_string())?;
    let text = comparison.markdown();
    print!("{text}");
    if let Some(path) = out {
        derma_report::write_atomic(&path, text.as_bytes()).map_err(|e| e.to_string())?;
        println!("\nwritten to {}", path.display());
    }
    Ok(())
}
