"""Running a tool call: the pipeline, worker pools, background runs, captured output, asking the client."""
