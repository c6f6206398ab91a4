"""The six stages of a round. With `rlhf.round` and `rlhf.cli`, this is the glue layer:
the only code that imports the domain packages (policy, annotation, reward, evals)."""
