"""SSPS: memory queues, spherical k-means and the pseudo-positive sampler (apart from the SSL methods)."""

from ssps.sampling.diagnostics import cluster_diagnostics, sampling_diagnostics
from ssps.sampling.kmeans import KMeansResult, nearest_clusters, spherical_kmeans
from ssps.sampling.queue import PositiveQueue, ReferenceQueue
from ssps.sampling.ssps import SAMPLERS, SampleResult, SSPSSampler

__all__ = [
    "SAMPLERS",
    "KMeansResult",
    "PositiveQueue",
    "ReferenceQueue",
    "SSPSSampler",
    "SampleResult",
    "cluster_diagnostics",
    "nearest_clusters",
    "sampling_diagnostics",
    "spherical_kmeans",
]
