//! `glass report RESULTS_DIR`: the HTML report (`reports::html`) of a
//! results directory; `glass report merge`: a sweep's indices merged
//! (`commands::sweep`).

use anyhow::{Result, bail};

use crate::cli::{ReportArgs, ReportCommand};

/// `glass report DIR` or `glass report merge DIR… --out OUT`.
pub fn run(args: &ReportArgs) -> Result<()> {
    match (&args.command, &args.results) {
        (Some(ReportCommand::Merge(m)), _) => super::sweep::merge(m),
        (None, Some(dir)) => {
            let out = reports::html::write_report(dir, &crate::protocol::report_figures())?;
            println!("report: {}", out.display());
            Ok(())
        }
        (None, None) => bail!("glass report needs a results directory"),
    }
}
