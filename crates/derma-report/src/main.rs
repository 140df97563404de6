//! `derma-report RUN_DIR...`: (re)writes the plots, `report.md` and `report.html` of finished
//! run folders from their files. The images are not in a run folder, so the error gallery
//! shows the thumbnails the training run left in `gallery/` for the same selection, or lists
//! the items without thumbnails when there are none.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    const USAGE: &str = "usage: derma-report RUN_DIR...  (re)writes plots/, report.md and report.html of each run folder";
    let dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.iter().any(|d| d.as_os_str() == "-h" || d.as_os_str() == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
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
