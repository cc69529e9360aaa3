"""The build step: export and compile the models, write the Triton model repository, index the corpus."""
