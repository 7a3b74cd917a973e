//! What `glass run` writes and prints: results.json (`records`), the
//! frame and second series (`series`) and the summary tables (`tables`).

pub mod records;
pub mod series;
pub mod tables;

/// The progress bar of a long command (`glass run`, `glass soak`): drawn on
/// a terminal, hidden when stderr is a pipe or a CI log.
pub fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {msg}")
            .expect("a constant, valid template")
            .progress_chars("=> "),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}
