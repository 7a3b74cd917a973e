//! `glass report RESULTS_DIR`: the HTML report (`reports::html`) of a
//! results directory.

use anyhow::Result;

/// `glass report DIR`.
pub fn run(args: &crate::cli::ReportArgs) -> Result<()> {
    let out = reports::html::write_report(&args.results, &crate::protocol::report_figures())?;
    println!("report: {}", out.display());
    Ok(())
}
