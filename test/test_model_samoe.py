"""SA-MoE core: streaming equals batch, expert isolation, causality, context collapse."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ellsa_ros.model.config import sized
from ellsa_ros.model.layout import ALWAYS, DROP, KEEP, SENTENCE, SPECIAL_ID, Segment, visibility
from ellsa_ros.model.network import EllsaNet
from ellsa_ros.model.streaming import KVCache
from ellsa_ros.model.training_batch import BlockExample, collate, episode_segment

pytestmark = pytest.mark.usefixtures("one_torch_thread")


RNG = np.random.default_rng(7)


def tiny(**kw):
    torch.manual_seed(0)
    return EllsaNet(sized("tiny", action_head="continuous", **kw)).eval()


def unit(n):
    v = RNG.standard_normal(n).astype(np.float32)
    return v / np.linalg.norm(v)


def episode(c, n_blocks=5):
    blocks = []
    for b in range(n_blocks):
        blocks.append(BlockExample(
            heard_ids=list(RNG.integers(0, 700, size=3)) if b % 2 == 0 else [],
            sentence=unit(c.sentence_dim) if b % 2 == 0 and c.sentence_dim else None,
            images=RNG.integers(0, 255, (len(c.cameras), c.image_size, c.image_size, 3), dtype=np.uint8),
            state=RNG.standard_normal(c.state_dim).astype(np.float32),
            text_ids=list(RNG.integers(0, 700, size=2)) if b % 3 == 0 else [],
            actions=RNG.uniform(-1, 1, (c.chunk, c.dof)).astype(np.float32) if b != 2 else None))
    return episode_segment(c, [5, 6, 7], blocks, None)


def batch_hidden(net, ep):
    b = collate(net.c, [ep])
    features = net.feature_table(b)[b.feature_index]
    past_k, past_v = net.core.empty_past(1)
    with torch.no_grad():
        hidden, _, _ = net.core(b.ids, features, b.experts, b.positions, b.mask, past_k, past_v)
    return hidden[0], features[0], b


def stream_hidden(net, ep, features, experts, pieces):
    """Feeds the episode through the KV cache in `pieces` (cut points), evicting at block starts."""
    c, seg = net.c, ep.seg
    cache = KVCache.for_config(c)
    out = []
    for a, z in zip(pieces[:-1], pieces[1:]):
        part = seg[a:z]
        cache.evict(int(part.block.min()), c)
        past_k, past_v = (torch.from_numpy(np.ascontiguousarray(x)) for x in cache.past())
        mask = torch.from_numpy(cache.mask_for(part, c))[None]
        pos = torch.from_numpy(cache.positions_for(part))[None]
        with torch.no_grad():
            h, k, v = net.core(torch.from_numpy(part.ids)[None], features[None, a:z], experts[None, a:z], pos, mask,
                               past_k, past_v)
        cache.append(part, k[:, 0].numpy(), v[:, 0].numpy())
        out.append(h[0])
    return torch.cat(out), cache


def cut_points(seg: Segment, rng):
    """Block starts, plus random cuts inside blocks (single tokens, as decoding feeds them)."""
    cuts = {0, len(seg)}
    cuts |= set(np.flatnonzero(np.diff(seg.block)) + 1)
    cuts |= set(rng.integers(1, len(seg), size=len(seg) // 3).tolist())
    return sorted(cuts)


@pytest.mark.parametrize("history_tokens,sentence_dim", [(256, 0), (9, 0), (256, 384), (9, 384)])
def test_streaming_block_by_block_equals_one_full_forward_pass(history_tokens, sentence_dim):
    net = tiny(history_tokens=history_tokens, sentence_dim=sentence_dim)
    ep = episode(net.c)
    hidden, features, b = batch_hidden(net, ep)
    streamed, cache = stream_hidden(net, ep, features, b.experts[0], cut_points(ep.seg, np.random.default_rng(1)))
    assert torch.allclose(streamed, hidden, atol=2e-5), (streamed - hidden).abs().max()
    # the cache dropped the aged pixels/actions and, with a small budget, old text too
    assert cache.length < len(ep.seg)
    kept_old = (cache.block[:cache.length] <= 4 - net.c.keep_blocks) & (cache.keep[:cache.length] == KEEP)
    assert kept_old.sum() <= history_tokens
    slots = np.flatnonzero(ep.seg.src == SENTENCE)
    assert len(slots) == (3 if sentence_dim else 0)
    if sentence_dim:
        # the slots carry their embedding's projection, and the collapse keeps them as it keeps heard text
        assert (ep.seg.keep[slots] == KEEP).all() and (b.experts[0, slots] == net.c.routing["speech"]).all()
        assert not torch.allclose(features[slots[0]], features[slots[1]])
        if history_tokens == 256:
            assert set(slots) <= set(cache.position[:cache.length].tolist())


def test_collapse_keeps_last_k_blocks_in_full_and_only_markers_and_text_of_older():
    k_block = np.array([-1, -1, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3])
    k_keep = np.array([ALWAYS, ALWAYS, KEEP, DROP, KEEP, KEEP, DROP, KEEP, KEEP, DROP, KEEP, KEEP, DROP])
    pos = np.arange(len(k_block))
    vis = visibility(np.array([3]), np.array([12]), k_block, k_keep, pos, keep_blocks=2, history_tokens=3)[0]
    # prompt always; blocks 2, 3 in full; block 1 and 0: only KEEP, and only the newest 3 of them
    assert vis.tolist() == [True, True, False, False, True, True, False, True, True, True, True, True, True]
    with_budget = visibility(np.array([3]), np.array([12]), k_block, k_keep, pos, keep_blocks=2, history_tokens=10)[0]
    assert with_budget[[2, 4]].all() and not with_budget[[3, 6]].any()


def test_perturbing_one_experts_own_weights_changes_layer_one_only_at_its_tokens():
    net = tiny()
    ep = episode(net.c, 2)
    _, features, b = batch_hidden(net, ep)
    x = net.core.embed(b.ids) + features
    from ellsa_ros.model.samoe import Routes, rotary
    routes = Routes(b.experts, net.c.n_experts)
    cos, sin = rotary(b.positions, net.c.head_dim, net.c.rope_theta)
    layer = net.core.layers[0]
    past = torch.zeros(1, net.c.n_kv_heads, 0, net.c.head_dim)
    with torch.no_grad():
        before, _, _ = layer(x, routes, cos, sin, b.mask, past, past)
        action = net.c.routing["action"]
        ex = layer.experts[action]
        D = net.c.d_model
        ex.qkv_proj.weight[:D].add_(0.05 * torch.randn_like(ex.qkv_proj.weight[:D]))  # Q only
        ex.o.weight.add_(0.05)
        ex.norm_post.weight.add_(0.5)
        ex.gate_up.weight.add_(0.05)
        ex.down.weight.add_(0.05)
        after, _, _ = layer(x, routes, cos, sin, b.mask, past, past)
    changed = (after - before).abs().amax(-1)[0] > 1e-6
    own = b.experts[0] == action
    assert changed[own].all()
    assert not changed[~own].any()


def test_an_experts_keys_and_values_reach_later_tokens_of_the_other_expert():
    net = tiny()
    ep = episode(net.c, 2)
    hidden, _, b = batch_hidden(net, ep)
    action = net.c.routing["action"]
    kv_rows = slice(net.c.d_model, None)
    with torch.no_grad():
        net.core.layers[0].experts[action].qkv_proj.weight[kv_rows].add_(0.05)
    after, _, _ = batch_hidden(net, ep)
    changed = (after - hidden).abs().amax(-1) > 1e-6
    experts = b.experts[0]
    first_action = int(torch.nonzero(experts == action)[0])
    language_after = (experts != action) & (torch.arange(len(experts)) > first_action)
    assert changed[language_after].any()          # fusion through the shared attention
    assert not changed[:first_action].any()       # nothing before the first action-expert token


def test_causal_masking_later_tokens_do_not_change_earlier_states():
    net = tiny()
    ep = episode(net.c, 3)
    hidden, _, b = batch_hidden(net, ep)
    cut = len(ep.seg) // 2
    ep.seg.ids[cut:] = SPECIAL_ID["<silence>"]
    for ex in ep.blocks[1:]:
        ex.images = 255 - ex.images
    after, _, _ = batch_hidden(net, ep)
    first_block1 = int(np.flatnonzero(ep.seg.block == 1)[0])
    stop = min(cut, first_block1)
    assert torch.allclose(after[:stop], hidden[:stop], atol=1e-6)
    assert not torch.allclose(after[stop:], hidden[stop:], atol=1e-3)
