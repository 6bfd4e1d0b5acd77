"""The pilot study (the DTM paper's Section 3): the data-size sweep behind the alignment-tax curves
(`sweep`, `sweep_figure`) and the train/validation loss dynamics (`loss_dynamics`, `token_stats`,
`dynamics_report`), run by `atax run` (a `sweep:` section) and `atax analyze`."""
