"""Datasets on disk to aligned shards: adapters per dataset, label maps, the manifest, frames,
alignment, sampling, the synthetic generator, shard preparation and layout, and fold splits."""
