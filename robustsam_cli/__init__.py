"""The `robustsam` command line: a thin layer over `core`, `priors` and `train`."""
