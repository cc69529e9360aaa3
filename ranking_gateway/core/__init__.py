"""The shared core: settings, the artifacts layout, the model contract, corpora and the first stage. No torch, no HTTP."""
