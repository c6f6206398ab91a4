"""The six stages of a round. With `rlhf.pipeline.round` and `rlhf.cli.main`, this is the glue layer:
the only code that imports the domain packages (policy, annotation, reward, evals)."""
