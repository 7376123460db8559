"""The streaming data engine: duplex training data from scripted LIBERO demonstrations.

rollout (a demonstration with its conversation) -> storage (raw timed streams in shards, a
manifest) -> reader ((Block, Decision) pairs cut at read time for any block length).
`generate` runs many rollouts in parallel and resumably; `inspect` summarizes a dataset;
`command` is `ellsa datagen`. Importing this package loads nothing heavy.
"""
