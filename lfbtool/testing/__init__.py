"""Test support shipped with the package (as ``numpy.testing`` / ``torch.testing`` are): tiny synthetic
AVA-style datasets and random-weight checkpoints, for the demo, the tests and the benchmarks."""
