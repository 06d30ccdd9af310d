"""The SSPS sampler on synthetic embeddings: speakers are blobs, sessions an offset per recording."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from ssps.config import SSPSConfig
from ssps.errors import SSPSError
from ssps.sampling.diagnostics import cluster_diagnostics, sampling_diagnostics
from ssps.sampling.ssps import SSPSSampler, uses_labels, uses_sessions

SPEAKERS, SESSIONS, UTTS, DIM = 12, 4, 6, 32
N = SPEAKERS * SESSIONS * UTTS


def _corpus(seed: int = 0):
    """Reference embeddings = speaker direction + session offset + noise; (N, DIM), speakers, sessions."""
    g = torch.Generator().manual_seed(seed)
    speaker = torch.arange(SPEAKERS).repeat_interleave(SESSIONS * UTTS)
    session = torch.arange(SPEAKERS * SESSIONS).repeat_interleave(UTTS)  # unique per speaker
    centres = F.normalize(torch.randn(SPEAKERS, DIM, generator=g), dim=1)
    offsets = 0.4 * F.normalize(torch.randn(SPEAKERS * SESSIONS, DIM, generator=g), dim=1)
    ref = centres[speaker] + offsets[session] + 0.1 * torch.randn(N, DIM, generator=g)
    return F.normalize(ref, dim=1), speaker, session


def _sampler(sampling="kmeans-repr", fill=True, with_labels=True, ref=None, **cfg_kw) -> SSPSSampler:
    cfg_kw = {
        "num_clusters": SPEAKERS * SESSIONS,
        "positive_queue_size": N,
        "queue_dtype": "float32",
        **cfg_kw,
    }
    cfg = SSPSConfig(sampling=sampling, **cfg_kw)
    corpus_ref, speaker, session = _corpus()
    ref = corpus_ref if ref is None else ref
    # Labels only for the sampler that is named as using them; metadata only where a setting uses it.
    speakers = speaker if with_labels and uses_labels(cfg) else None
    sessions = session if with_labels and uses_sessions(cfg) else None
    s = SSPSSampler(cfg, N, DIM, (2,), speakers, sessions)
    if fill:
        idx = torch.arange(N)
        s.write_reference(idx, ref)
        # A stored positive names its utterance, so a test can check that the row matches the source.
        s.write_positive(idx, torch.stack([idx.float(), -idx.float()], 1))
    return s


def _labels():
    """(speakers, sessions) of the synthetic corpus, for diagnostics."""
    _, speaker, session = _corpus()
    return speaker, session


def _check_rows(res, s: SSPSSampler):
    f = res.found
    assert torch.equal(res.positives[f, 0].long(), res.source_indices[f])
    assert (res.positives[~f] == 0).all() and (res.source_indices[~f] == -1).all()


@pytest.mark.parametrize("m", [0, 1, 2])
def test_kmeans_repr_draws_from_the_chosen_clusters(m):
    s = _sampler(nearest_clusters=m)
    s.cluster(seed=0)
    anchors = torch.arange(N)
    res = s.sample(anchors, step=0)
    sizes = torch.bincount(s.assignments, minlength=s.centroids.shape[0])
    c_anchor = s.assignments[anchors]
    # M = 0: a candidate exists iff the anchor's cluster has another member; M >= 1: no empty cluster here.
    assert torch.equal(res.found, sizes[c_anchor] > 1) if m == 0 else res.found.all()
    assert res.coverage > 0.9
    _check_rows(res, s)
    f = res.found
    anchors, source = anchors[f], res.source_indices[f]
    assert (source != anchors).all()
    c_anchor, c_source = s.assignments[anchors], s.assignments[source]
    if m == 0:
        assert torch.equal(c_source, c_anchor)
    else:
        assert (s.neighbours[c_anchor] == c_source[:, None]).any(1).all()
        assert (c_source != c_anchor).all()


def test_falls_back_when_no_candidate():
    s = _sampler(fill=False, nearest_clusters=0, num_clusters=4, positive_queue_size=1)
    ref, _, _ = _corpus()
    s.write_reference(torch.arange(N // 2), ref[: N // 2])  # the second half has no reference
    s.cluster(seed=0)
    res = s.sample(torch.tensor([0, 5]), step=0)
    assert not res.found.any() and res.coverage == 0.0  # empty positive queue
    s.write_positive(torch.tensor([5]), torch.tensor([[5.0, -5.0]]))
    res = s.sample(torch.tensor([5, N - 1]), step=1)
    assert res.found.tolist() == [False, False]  # 5's only candidate is itself; N-1 is unclustered
    _check_rows(res, s)


def test_exclude_same_session():
    s = _sampler(exclude_same_session=True, num_clusters=SPEAKERS, nearest_clusters=0)
    s.cluster(seed=0)
    anchors = torch.arange(N).repeat(3)
    res = s.sample(anchors, step=2)
    assert res.coverage > 0.9
    src = res.source_indices[res.found]
    assert (s.session_ids[src] != s.session_ids[anchors[res.found]]).all()


@pytest.mark.parametrize("sampling", ["knn", "kmeans-repr"])
def test_exclude_own_cluster_never_draws_from_it_and_reads_no_metadata(sampling):
    # Clusters at the recording scale (K = sessions): the own cluster stands in for the recording.
    s = _sampler(sampling, with_labels=False, exclude_own_cluster=True, nearest_clusters=0, knn_neighbours=3)
    assert (s.session_ids == -1).all() and (s.speaker_ids == -1).all()  # label-free by construction
    s.cluster(seed=0)
    anchors = torch.arange(N)
    res = s.sample(anchors, step=1)
    src = res.source_indices[res.found]
    assert (s.assignments[src] != s.assignments[anchors[res.found]]).all()
    if sampling == "knn":  # a k-nearest draw outside the own cluster: still found for nearly everyone
        assert res.coverage > 0.95
        speaker, session = _labels()
        d = sampling_diagnostics(anchors, res.source_indices, res.found, speaker, session)
        plain = _sampler("knn", with_labels=False, knn_neighbours=3)
        plain.cluster(seed=0)
        p = plain.sample(anchors, step=1)
        e = sampling_diagnostics(anchors, p.source_indices, p.found, speaker, session)
        assert d["same_session_rate"] < e["same_session_rate"] / 2
    else:  # M = 0 with the own cluster excluded leaves nothing to draw
        assert not res.found.any()


def test_exclude_same_channel_keeps_the_recording_out_without_metadata():
    # Channel statistics: a per-recording offset (room, microphone...) plus a little noise, as in real audio.
    # Fewer clusters than recordings: k-means merges recordings rather than splitting one.
    k = SPEAKERS * SESSIONS // 2
    s = _sampler("knn", with_labels=False, exclude_same_channel=True, channel_clusters=k)
    assert (s.session_ids == -1).all() and s.needs_channel
    speaker, session = _labels()
    g = torch.Generator().manual_seed(5)
    offsets = 3 * torch.randn(SPEAKERS * SESSIONS, 80, generator=g) - 4
    s.write_channel(torch.arange(N), offsets[session] + 0.05 * torch.randn(N, 80, generator=g))
    s.cluster(seed=0)
    anchors = torch.arange(N)
    res = s.sample(anchors, step=0)
    d = sampling_diagnostics(anchors, res.source_indices, res.found, speaker, session)
    assert d["coverage"] > 0.95 and d["same_session_rate"] < 0.02
    src = res.source_indices[res.found]
    assert (s.channel_assignments[src] != s.channel_assignments[anchors[res.found]]).all()


@pytest.mark.parametrize("exclude", [False, True])
def test_draw_is_uniform_over_allowed_candidates(exclude):
    # One cluster, anchor 0 of session 0: 26 entries share its session, 4 do not. With the exclusion most
    # anchors exhaust the rejection tries and take the exact path; both must stay uniform.
    n = 30
    cfg = SSPSConfig(num_clusters=1, nearest_clusters=0, positive_queue_size=n, exclude_same_session=exclude)
    sessions = torch.tensor([0] * 26 + [1, 2, 3, 4])
    s = SSPSSampler(cfg, n, 4, (1,), session_ids=sessions if exclude else None)
    s.write_reference(torch.arange(n), torch.randn(n, 4))
    s.write_positive(torch.arange(n), torch.arange(n, dtype=torch.float32)[:, None])
    s.cluster(seed=0)
    res = s.sample(torch.zeros(6000, dtype=torch.long), step=0)
    allowed = torch.arange(26, 30) if exclude else torch.arange(1, n)
    assert res.found.all() and torch.isin(res.source_indices, allowed).all()
    counts = torch.bincount(res.source_indices, minlength=n)[allowed]
    assert chisquare(counts.numpy()).pvalue > 1e-3


def test_pseudo_positive_accuracy_far_above_chance():
    chance = 1 / SPEAKERS
    s = _sampler(exclude_same_session=True, nearest_clusters=1)
    s.cluster(seed=0)
    anchors = torch.arange(N)
    res = s.sample(anchors, step=0)
    d = sampling_diagnostics(anchors, res.source_indices, res.found, *_labels())
    assert d["speaker_accuracy"] > 5 * chance and d["same_session_rate"] == 0.0
    knn = _sampler("knn", exclude_same_session=True, knn_neighbours=3)
    res = knn.sample(anchors, step=0)
    d = sampling_diagnostics(anchors, res.source_indices, res.found, *_labels())
    assert d["coverage"] == 1.0 and d["speaker_accuracy"] > 10 * chance
    c = cluster_diagnostics(s.assignments, *_labels())
    assert 0 < c["nmi_speaker"] <= 1 and 0 < c["purity"] <= 1 and "nmi_session" in c


def test_oracle_is_same_speaker_other_session():
    s = _sampler("oracle")
    anchors = torch.arange(N)
    res = s.sample(anchors, step=0)
    d = sampling_diagnostics(anchors, res.source_indices, res.found, *_labels())
    assert d == {"coverage": 1.0, "speaker_accuracy": 1.0, "same_session_rate": 0.0}
    _check_rows(res, s)


def test_mutual_neighbours_draw_only_candidates_that_rank_the_anchor_among_their_m_nearest():
    k, m = 4, 2
    ref, _, _ = _corpus()
    noisy = F.normalize(ref + 0.3 * torch.randn(N, DIM, generator=torch.Generator().manual_seed(1)), dim=1)
    s = _sampler("knn", knn_neighbours=k, mutual_neighbours=m, ref=noisy)
    anchors = torch.arange(N)
    res = s.sample(anchors, step=0)
    sim = noisy @ noisy.T
    sim.fill_diagonal_(-float("inf"))  # never its own neighbour
    top = sim.topk(k, dim=1).indices  # (N, k) every anchor's candidates (the queue holds every row)
    worst = sim.topk(m, dim=1).values[:, -1]  # each row's m-th neighbour
    mutual = sim.gather(1, top) >= worst[top]  # (N, k): the candidate ranks the anchor in its m nearest
    assert 0 < int(mutual.any(1).sum()) < N
    assert torch.equal(res.found, mutual.any(1))
    drawn = res.source_indices[res.found]
    assert ((top[res.found] == drawn[:, None]) & mutual[res.found]).any(1).all()
    _check_rows(res, s)
    # Without the filter the same search draws among all k (so the filter is what removed the others).
    assert _sampler("knn", knn_neighbours=k, ref=noisy).sample(anchors, step=0).found.all()
    for bad in (
        {"sampling": "kmeans-repr"},
        {"sampling": "knn", "session_pooling": True},
        {"sampling": "knn"},
    ):
        m_bad = -1 if bad == {"sampling": "knn"} else 2
        with pytest.raises(SSPSError, match="ssps.mutual_neighbours"):
            _sampler(**bad, mutual_neighbours=m_bad)


def test_margin_keep_draws_only_the_batch_share_of_candidates_standing_out_from_the_anchors_background():
    k, rank, keep = 4, 10, 0.4
    ref, _, _ = _corpus()
    noisy = F.normalize(ref + 0.3 * torch.randn(N, DIM, generator=torch.Generator().manual_seed(1)), dim=1)
    s = _sampler("knn", knn_neighbours=k, margin_keep=keep, margin_rank=rank, ref=noisy)
    anchors = torch.arange(N)
    res = s.sample(anchors, step=0)
    sim = (noisy @ noisy.T).double()
    sim.fill_diagonal_(-float("inf"))  # never its own neighbour
    vals, top = sim.topk(rank, dim=1)  # the queue holds every row once
    margin = vals[:, :k] - vals[:, rank - 1 : rank]  # (N, k)
    threshold = margin.flatten().sort().values[int(round((1 - keep) * (N * k - 1)))]
    kept = margin >= threshold - 1e-6
    assert 0.3 < kept.float().mean() < 0.5 and 0 < int(kept.any(1).sum()) < N
    assert torch.equal(res.found, kept.any(1))
    drawn = res.source_indices[res.found]
    assert ((top[res.found, :k] == drawn[:, None]) & kept[res.found]).any(1).all()
    _check_rows(res, s)
    # The background is the anchor's own: a raw cosine threshold would keep other candidates.
    raw = vals[:, :k] >= vals[:, :k].flatten().sort().values[int(round((1 - keep) * (N * k - 1)))]
    assert not torch.equal(raw, kept)
    for bad in (
        {"sampling": "kmeans-repr", "margin_keep": 0.5},
        {"sampling": "knn", "margin_keep": 0.5, "mutual_neighbours": 2},
        {"sampling": "knn", "margin_keep": 0.0},
        {"sampling": "knn", "margin_keep": 0.5, "margin_rank": 0},
    ):
        with pytest.raises(SSPSError, match="ssps.margin_keep"):
            _sampler(**bad)


def test_margins_fall_back_to_the_farthest_allowed_candidate():
    from ssps.sampling.draws import margins

    inf = float("inf")
    vals = torch.tensor([[0.9, 0.8, 0.5, 0.1], [0.7, 0.6, -inf, -inf], [-inf, -inf, -inf, -inf]])
    m = margins(vals, 2, 3)
    assert torch.allclose(m[0], torch.tensor([0.4, 0.3])) and torch.allclose(m[1], torch.tensor([0.1, 0.0]))
    assert torch.isinf(m[2]).all()


def test_oracle_filter_drops_exactly_the_wrong_speaker_draws():
    """The diagnostic reads labels: the same draws as the label-free sampler, minus the other speakers'."""
    ref, _, _ = _corpus()
    noisy = F.normalize(ref + 0.3 * torch.randn(N, DIM, generator=torch.Generator().manual_seed(1)), dim=1)
    plain = _sampler("knn", knn_neighbours=5, ref=noisy)
    filtered = _sampler("knn", knn_neighbours=5, oracle_filter=True, ref=noisy)
    assert uses_labels(filtered.cfg) and not uses_sessions(filtered.cfg)
    assert (filtered.speaker_ids >= 0).all() and (filtered.session_ids == -1).all()
    anchors = torch.arange(N)
    a, b = plain.sample(anchors, step=3), filtered.sample(anchors, step=3)
    speaker, _ = _labels()
    right = a.found & (speaker[a.source_indices.clamp_min(0)] == speaker)
    assert 0 < int(right.sum()) < N  # knn 5 over noisy blobs draws some wrong speakers to drop
    assert torch.equal(b.found, right)
    assert torch.equal(b.source_indices, torch.where(right, a.source_indices, -1))
    _check_rows(b, filtered)
    half = _sampler("knn", knn_neighbours=5, oracle_filter=True, oracle_filter_share=0.5, ref=noisy)
    c = half.sample(anchors, step=3)
    assert torch.equal(c.found & right, right)  # right draws all kept
    assert 0 < int((c.found & ~right).sum()) < int((a.found & ~right).sum())  # some wrong ones too
    assert torch.equal(c.source_indices[c.found], a.source_indices[c.found])
    with pytest.raises(SSPSError, match="oracle_filter_share"):
        _sampler("knn", oracle_filter=True, oracle_filter_share=1.5)
    for sampling in ("oracle", "kmeans"):
        with pytest.raises(SSPSError, match=f"ssps.oracle_filter .* ssps.sampling={sampling}"):
            _sampler(sampling, oracle_filter=True)
    with pytest.raises(SSPSError, match="need speaker labels"):
        _sampler("knn", oracle_filter=True, with_labels=False)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # bfloat16: shortlist pass where the CPU has it
def test_knn_returns_one_of_the_k_nearest_allowed(dtype):
    k = 3
    s = _sampler("knn", knn_neighbours=k, exclude_same_session=True, queue_dtype=dtype)
    anchors = torch.arange(0, N, 7)
    res = s.sample(anchors, step=0)
    ref = s.reference.embeddings.float()
    sim = ref[anchors] @ ref.T
    sim[s.session_ids[anchors][:, None] == s.session_ids[None]] = -float("inf")  # also removes itself
    top = sim.topk(k, dim=1).indices
    assert res.found.all() and (top == res.source_indices[:, None]).any(1).all()
    _check_rows(res, s)


def test_kmeans_variant_returns_the_centroid():
    cfg = SSPSConfig(sampling="kmeans", num_clusters=8, nearest_clusters=1, positive_queue_size=4)
    ref, _, _ = _corpus()
    s = SSPSSampler(cfg, N, DIM, (DIM,))
    s.write_reference(torch.arange(N), ref)
    s.cluster(seed=0)
    res = s.sample(torch.arange(N), step=0)
    assert res.found.all() and (res.source_indices == -1).all()
    chosen = s.neighbours[s.assignments, 0]
    assert torch.allclose(res.positives, s.centroids[chosen])
    with pytest.raises(SSPSError, match="shape"):
        SSPSSampler(cfg, N, DIM, (2,))


def test_same_step_same_draw():
    s = _sampler()
    s.cluster(seed=0)
    a, b, c = (s.sample(torch.arange(N), step=t) for t in (4, 4, 5))
    assert torch.equal(a.source_indices, b.source_indices)
    assert not torch.equal(a.source_indices, c.source_indices)


@pytest.mark.parametrize("save", [False, True])
def test_state_dict_holds_queues_only_when_asked(save):
    s = _sampler(save_queues=save)
    s.cluster(seed=0)
    state = s.state_dict()
    fresh = _sampler(fill=False, save_queues=save)
    fresh.load_state_dict(state)
    if save:
        assert torch.equal(
            fresh.sample(torch.arange(N), 3).source_indices, s.sample(torch.arange(N), 3).source_indices
        )
    else:
        assert state["_extra_state"] == {} and not fresh.reference.filled.any()
    assert s.memory_bytes() >= s.reference.nbytes + s.positive.nbytes


def test_queue_state_shape_mismatch_is_one_line_error():
    s = _sampler()
    other = SSPSSampler(dataclasses.replace(s.cfg, positive_queue_size=7), N, DIM, (2,))
    with pytest.raises(SSPSError, match="positive.embeddings"):
        other.load_queue_state(s.queue_state())


def test_bad_setups_raise():
    with pytest.raises(SSPSError, match="ssps.sampling"):
        SSPSSampler(SSPSConfig(sampling="random"), N, DIM, (2,))
    with pytest.raises(SSPSError, match="speaker"):
        _sampler("oracle", with_labels=False)
    with pytest.raises(SSPSError, match="session"):
        _sampler(exclude_same_session=True, with_labels=False)
    with pytest.raises(SSPSError, match="queue_dtype"):
        _sampler(queue_dtype="bfloat8")
    with pytest.raises(SSPSError, match="empty"):
        _sampler(fill=False).cluster()
    with pytest.raises(RuntimeError, match="cluster"):
        _sampler().sample(torch.arange(3), step=0)


def test_session_pooling_keys_are_session_means_and_beat_single_utterances():
    g = torch.Generator().manual_seed(1)
    ref, speaker, session = _corpus()
    noisy = F.normalize(ref + 0.5 * torch.randn(N, DIM, generator=g), dim=1)  # utterance-level noise
    accuracy = {}
    idx = torch.arange(N)
    for pooling in (False, True):
        s = _sampler("knn", ref=noisy, knn_neighbours=3, exclude_same_session=True, session_pooling=pooling)
        s.cluster(seed=0)
        if pooling:
            first = session == 0
            expected = F.normalize(s.reference.embeddings[first].mean(0), dim=0)
            assert torch.allclose(s.keys()[first], expected.expand(int(first.sum()), -1), atol=1e-5)
        res = s.sample(idx, step=0)
        d = sampling_diagnostics(idx, res.source_indices, res.found, speaker, session)
        assert d["same_session_rate"] == 0.0
        accuracy[pooling] = d["speaker_accuracy"]
    assert accuracy[True] > accuracy[False] + 0.1, accuracy


def test_session_pooling_needs_sessions():
    with pytest.raises(SSPSError, match="session_pooling needs session ids"):
        SSPSSampler(SSPSConfig(sampling="knn", session_pooling=True), 4, 8, (8,))


def test_session_knn_draws_among_the_k_nearest_other_sessions():
    ref, speaker, session = _corpus()
    s = _sampler("knn", knn_neighbours=3, exclude_same_session=True, session_pooling=True)
    s.cluster(seed=0)
    idx = torch.arange(N)
    means = F.normalize(torch.stack([ref[session == j].mean(0) for j in range(SPEAKERS * SESSIONS)]), dim=1)
    sim = means @ means.T
    sim.fill_diagonal_(-float("inf"))
    top = sim.topk(3, dim=1).indices  # (S, 3) the 3 nearest other sessions of each session
    seen = {}
    for step in range(20):
        res = s.sample(idx, step=step)
        assert res.found.all()
        src_session = session[res.source_indices]
        assert (top[session] == src_session[:, None]).any(1).all()
        for a, b in zip(session.tolist(), src_session.tolist(), strict=True):
            seen.setdefault(a, set()).add(b)
    # Every session is pulled towards several recordings, not only its single nearest one.
    assert min(len(v) for v in seen.values()) >= 2
