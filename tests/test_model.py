"""The model (docs/method.md, sections 2-6): shapes, the maths each part promises, LoRA, cache."""

import warnings

import numpy as np
import pytest
import torch

from mer_ray.config import TrainConfig, from_dict, load_yaml
from mer_ray.model import LossConfig, MERLoss, MERNet, ModelConfig
from mer_ray.model.dgat import FrameGraphAttention
from mer_ray.model.encoder import SplitQKV, WeightsError
from mer_ray.model.losses import koleo
from mer_ray.model.sfa import SFA, conv_same, frequency_split, low_pass_mask
from mer_ray.model.variants import VARIANTS, variant

S, T, C = 56, 4, 3


def make(name="full", **kw):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-init warning is tested on its own
        return MERNet(variant(name, pretrained=False, **kw), C, S)


@pytest.fixture(scope="module")
def clips():
    return torch.randn(3, T, 3, S, S, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_shapes_for_each_variant(name, clips):
    net = make(name).eval()
    out = net(clips)
    assert out["logits"].shape == (3, C) and out["fused"].shape == (3, net.cfg.fusion_dim)
    cfg = net.cfg
    assert ("w" in out) == cfg.use_sfa and ("attention" in out) == cfg.use_dgat
    if cfg.use_sfa:
        assert out["f_sfa"].shape == (3, cfg.sfa_dim) and out["w"].shape == (3, T)
        assert out["alpha_low"].shape == (3, cfg.sfa_experts)
    if cfg.use_dgat:
        assert out["f_dgat"].shape == (3, cfg.dgat_dim)
        assert out["attention"].shape == (3, cfg.dgat_heads, T, T)
    assert torch.isfinite(out["logits"]).all()


def test_sfa_split_reconstructs_exactly():
    x = torch.randn(2, 8, 768, dtype=torch.float64)
    low, high, w = frequency_split(x, 0.25)
    assert torch.allclose(low + high, x, atol=1e-10)
    assert low.abs().sum() > 0 and high.abs().sum() > 0
    assert ((w >= 0) & (w <= 1)).all() and w.shape == (2, 8)


@pytest.mark.parametrize("t,d", [(8, 3456), (7, 385)])
def test_sfa_split_is_bitwise_the_shifted_spectrum_split(t, d):
    """The split masks the unshifted spectrum with the unshifted mask: the values and the
    gradients are those of masking the centred spectrum with the centred mask, to the bit."""
    def shifted(x, rho=0.25):  # the centred form: fftshift, mask, ifftshift
        spec = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
        m = low_pass_mask(t, d, rho)
        back = lambda s: torch.fft.ifft2(torch.fft.ifftshift(s, dim=(-2, -1))).real  # noqa: E731
        lo, hi = back(spec * m), back(spec * (1 - m))
        e_lo, e_hi = lo.pow(2).sum(-1), hi.pow(2).sum(-1)
        return lo, hi, e_hi / (e_lo + e_hi + 1e-6)

    x = torch.randn(3, t, d, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weights = [torch.randn(3, t, d), torch.randn(3, t, d), torch.randn(3, t)]
    ours, ref = frequency_split(x, 0.25), shifted(x)
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)
    grad = lambda outs: torch.autograd.grad(  # noqa: E731
        sum((o * w).sum() for o, w in zip(outs, weights)), x)[0]
    assert torch.equal(grad(ours), grad(ref))


@pytest.mark.parametrize("t,d,rho", [(8, 768, 0.25), (7, 384, 0.1), (16, 64, 0.4)])
def test_mask_is_centred_and_point_symmetric(t, d, rho):
    m = low_pass_mask(t, d, rho)
    assert m[t // 2, d // 2] == 1 and m.sum() < t * d
    for a in range(-(t // 2) + (1 - t % 2), t // 2 + (t % 2)):
        for b in (-(d // 2) + 1, -3, 0, 5, d // 2 - 1):
            assert m[t // 2 + a, d // 2 + b] == m[t // 2 - a, d // 2 - b]


def test_sfa_convolution_is_the_plain_convolution():
    """SFA's training-path convolution (oneDNN bypassed) gives nn.Conv2d's values and gradients."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, kernel_size=3, padding=1)
    x = torch.randn(3, 1, 8, 50, requires_grad=True)
    ours = conv_same(conv, x)
    grads = torch.autograd.grad((ours * torch.arange(ours.numel()).view_as(ours)).sum(),
                                [x, conv.weight, conv.bias])
    plain = conv(x)
    ref = torch.autograd.grad((plain * torch.arange(plain.numel()).view_as(plain)).sum(),
                              [x, conv.weight, conv.bias])
    assert torch.allclose(ours, plain, atol=1e-5)
    for g, r in zip(grads, ref):
        assert torch.allclose(g, r, rtol=1e-4, atol=1e-3)


def test_sfa_weights_in_range_and_experts_sum_to_one():
    sfa = SFA(64, 32, experts=5, rho=0.25)
    out = sfa(torch.randn(4, 8, 64) * 3)
    assert ((out["w"] >= 0) & (out["w"] <= 1)).all()
    for key in ("alpha_low", "alpha_high"):
        assert out[key].shape == (4, 5)
        assert torch.allclose(out[key].sum(-1), torch.ones(4), atol=1e-6)


def test_frequency_weight_tracks_high_frequency_content():
    smooth = torch.ones(1, 8, 64)
    noisy = smooth + torch.randn(1, 8, 64, generator=torch.Generator().manual_seed(0))
    assert frequency_split(noisy, 0.25)[2].mean() > frequency_split(smooth, 0.25)[2].mean() + 0.2


@pytest.mark.parametrize("guided", [True, False])
def test_dgat_attention_rows_and_frequency_guidance(guided):
    torch.manual_seed(0)
    gat = FrameGraphAttention(32, heads=4, freq_guidance=guided)
    h = torch.randn(2, 6, 32)
    w1 = torch.rand(2, 6)
    w2 = w1.clone()
    w2[:, 0] = 1.0 - w2[:, 0]
    _, a1 = gat(h, w1)
    _, a2 = gat(h, w2)
    assert torch.allclose(a1.sum(-1), torch.ones(2, 4, 6), atol=1e-6)
    assert (not torch.allclose(a1, a2)) == guided


def test_trainable_parameters_by_finetune_mode():
    lora = make("full")
    enc = {n for n, p in lora.encoder.named_parameters() if p.requires_grad}
    assert enc and all("lora_" in n for n in enc)
    assert {n.split(".")[2] for n in enc} == {"10", "11"}  # vit.blocks.<i>...
    assert all(".qkv.q." in n or ".qkv.v." in n for n in enc)
    heads = [p for n, p in lora.named_parameters() if not n.startswith("encoder.")]
    assert all(p.requires_grad for p in heads)
    full = make("full_finetune")
    assert all(p.requires_grad for p in full.parameters())
    frozen = make("baseline")
    assert not any(p.requires_grad for p in frozen.encoder.parameters())
    assert make("full", lora_blocks=0).encoder.split == 12


def test_split_qkv_same_output():
    lin = torch.nn.Linear(16, 48)
    x = torch.randn(5, 16)
    assert torch.allclose(SplitQKV(lin)(x), lin(x), atol=1e-6)


def test_lora_leaves_key_unchanged_after_a_step(clips):
    net = make("full").train()
    qkv = net.encoder.vit.blocks[11].attn.qkv
    probe = torch.randn(2, 10, net.encoder.embed_dim)
    with torch.no_grad():
        before = qkv(probe).clone()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    loss = MERLoss(LossConfig())(net(clips), torch.tensor([0, 1, 2]))["total"]
    loss.backward()
    lora_b = [p for n, p in net.encoder.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    opt.step()
    with torch.no_grad():
        after = qkv(probe)
    d = net.encoder.embed_dim
    assert torch.equal(before[..., d:2 * d], after[..., d:2 * d])  # K
    assert not torch.allclose(before[..., :d], after[..., :d])  # Q moved
    assert not torch.allclose(before[..., 2 * d:], after[..., 2 * d:])  # V moved
    # second step: gradient now reaches A as well (B is no longer zero)
    opt.zero_grad()
    MERLoss(LossConfig())(net(clips), torch.tensor([0, 1, 2]))["total"].backward()
    lora_a = [p for n, p in net.encoder.named_parameters() if "lora_A" in n]
    assert all(p.grad.abs().sum() > 0 for p in lora_a)


def test_koleo_finite_with_duplicates():
    y = torch.randn(4, 16)
    y = torch.cat([y, y[:2]]).requires_grad_()
    value = koleo(y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(y.grad).all()
    spread = koleo(torch.eye(6))
    assert value > spread  # duplicates are penalised
    assert koleo(torch.randn(1, 8)) == 0


def test_loss_parts_and_domain_adaptation(clips):
    net = make("full").eval()
    loss = MERLoss(LossConfig(lambda1=0.1, lambda2=0.5))
    out = net(clips)
    parts = loss(out, torch.tensor([0, 1, 2]))
    expected = parts["ce"] + 0.1 * parts["koleo"] + 0.5 * parts["cons"]
    assert torch.allclose(parts["total"], expected)
    target = net(clips.flip(1))
    da = loss(out, torch.tensor([0, 1, 2]), target=target)
    assert torch.allclose(da["ce"], parts["ce"]) and not torch.allclose(da["cons"], parts["cons"])
    no_dgat = MERLoss(LossConfig())(make("no_dgat")(clips), torch.tensor([0, 1, 2]))
    assert no_dgat["cons"] == 0


def test_cached_trunk_gives_same_logits(clips):
    net = make("full").eval()
    with torch.no_grad():
        direct = net(clips)["logits"]
        tokens = net.trunk_tokens(clips)
        cached = net(tokens=tokens)["logits"]
        half = net(tokens=tokens.half())["logits"]
    assert tokens.shape[:2] == (3, T)
    assert torch.allclose(direct, cached, atol=1e-4)
    assert torch.allclose(direct, half, atol=5e-2)  # fp16 storage: close, not exact
    with pytest.raises(ValueError, match="cannot be cached"):
        make("full_finetune").trunk_tokens(clips)


def test_same_seed_same_output(clips):
    a, b = make("full").eval(), make("full").eval()
    with torch.no_grad():
        assert torch.equal(a(clips)["logits"], b(clips)["logits"])


def test_tiny_model_overfits_synthetic_clips():
    import cv2

    from mer_ray.data.synth.render import RenderConfig, make_subject, plan_clip, render_clip
    from mer_ray.model.inputs import clips_to_tensor

    cfg = RenderConfig(frame_size=112)
    clips, labels = [], []
    for i, emotion in enumerate(["happiness", "surprise", "anger"] * 2):
        rng = np.random.default_rng(i)
        subject = make_subject(rng, cfg)
        plan = plan_clip(rng, emotion, cfg)
        frames = render_clip(subject, plan, cfg, rng)
        idx = np.round(np.linspace(plan.onset, plan.offset, T)).astype(int)
        clips.append([cv2.resize(frames[j], (S, S), interpolation=cv2.INTER_AREA) for j in idx])
        labels.append(i % 3)
    x = clips_to_tensor(np.array(clips, dtype=np.uint8))
    y = torch.tensor(labels)
    net = make("full", sfa_dim=64, dgat_dim=64, fusion_dim=64)
    loss_fn = MERLoss(LossConfig())
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=3e-3)
    tokens = net.trunk_tokens(x)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        ce = loss_fn(net(tokens=tokens), y)
        ce["total"].backward()
        opt.step()
        losses.append(float(ce["ce"]))
    assert losses[-1] < 0.25 * losses[0]
    assert (net.eval()(tokens=tokens)["logits"].argmax(1) == y).all()


def test_grid_frame_feature_keeps_where_it_moved():
    """frame_feature=grid: cell means of the final patch tokens, so a change in one corner of
    the face moves only that cell's part of the feature."""
    net = make(frame_feature="grid", frame_grid=2).eval()
    d = net.encoder.embed_dim
    assert net.encoder.out_dim == 4 * d
    side = S // 14
    tokens = torch.randn(1, 1 + side * side, d)
    feat = net.encoder.head(tokens)
    with torch.no_grad():
        x = tokens
        for blk in net.encoder.vit.blocks[net.encoder.split:]:
            x = blk(x)
        patches = net.encoder.vit.norm(x)[0, 1:].view(side, side, d)
    h = side // 2
    want = torch.stack([patches[:h, :h].mean((0, 1)), patches[:h, h:].mean((0, 1)),
                        patches[h:, :h].mean((0, 1)), patches[h:, h:].mean((0, 1))], dim=1)
    torch.testing.assert_close(feat[0].view(d, 4), want, atol=1e-5, rtol=1e-5)
    assert net(torch.randn(2, T, 3, S, S))["logits"].shape == (2, C)


@pytest.mark.parametrize("bad", [{"lora_rank": 0}, {"sfa_experts": 0},
                                 {"finetune": "adapter"}, {"frame_feature": "max"},
                                 {"frame_grid": 0}, {"dgat_dim": 30, "dgat_heads": 4}])
def test_config_validation(bad):
    with pytest.raises(ValueError, match="ModelConfig"):
        ModelConfig(**bad)


def test_frame_settings_have_one_home():
    """The frame size is data.size only: the model has no size of its own, a grid finer than
    its patches is refused where both are known, and the old model.image_size is unknown."""
    from mer_ray.config import ExperimentConfig

    with pytest.raises(ValueError, match="DataConfig: size"):
        ExperimentConfig().with_values({"data.size": 100})
    with pytest.raises(ValueError, match="frame_grid must be at most.*4"):
        ExperimentConfig().with_values({"data.size": 56, "model.frame_grid": 5})
    with pytest.raises(ValueError, match="image_size"):
        ExperimentConfig().with_values({"model.image_size": 56})
    assert "image_size" not in ExperimentConfig().to_dict()["model"]


def test_config_from_dict_and_yaml(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("lora_rank: 16\nsfa_experts: 6\nuse_lstm: false\n")
    cfg = from_dict(ModelConfig, load_yaml(path))
    assert (cfg.lora_rank, cfg.sfa_experts, cfg.use_lstm) == (16, 6, False)
    with pytest.raises(ValueError, match="lora_rnk"):
        from_dict(ModelConfig, {"lora_rnk": 4})
    with pytest.raises(ValueError):
        LossConfig(lambda1=-1)
    with pytest.raises(ValueError, match="unknown variant"):
        variant("everything")


def test_overrides_read_exponent_floats():
    from mer_ray.config import ExperimentConfig

    exp = ExperimentConfig().with_overrides(["train.lr=1e-3", "loss.lambda1=0"])
    assert exp.train.lr == 1e-3 and isinstance(exp.train.lr, float)
    assert exp.loss.lambda1 == 0.0
    with pytest.raises(ValueError, match="TrainConfig.lr"):
        ExperimentConfig().with_overrides(["train.lr=fast"])


def test_weights_file_loaded_strictly(tmp_path):
    import timm
    from safetensors.torch import save_file

    src = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=S,
                            num_classes=0)
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pt")
    for f in ("w.safetensors", "w.pt"):
        net = make("full", backbone_weights=str(tmp_path / f))
        assert net.pretrained
        assert torch.equal(net.encoder.vit.blocks[0].mlp.fc1.weight, src.blocks[0].mlp.fc1.weight)
    broken = dict(state)
    broken.pop("blocks.3.norm1.weight")
    broken["extra.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=r"bad\.pt.*blocks\.3\.norm1\.weight.*extra\.weight"):
        make("full", backbone_weights=str(tmp_path / "bad.pt"))
    with pytest.raises(WeightsError, match="not found"):
        make("full", backbone_weights=str(tmp_path / "missing.pt"))


def test_pretrained_without_hub_falls_back_loudly(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path))
    from mer_ray.model import encoder

    monkeypatch.setattr(encoder, "_WARNED", set())  # shown once per process: start afresh
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        net = MERNet(ModelConfig(pretrained=True), C, S)
    assert net.pretrained is False


def test_accounting_table7_columns(capsys):
    from mer_ray.cli import main as cli
    from mer_ray.model.accounting import model_stats, training_rss

    lora = model_stats("full", variant("full", pretrained=False), T, S)
    full = model_stats("full_finetune", variant("full_finetune", pretrained=False), T, S)
    assert full.trainable_params == full.total_params > 10 * lora.trainable_params
    assert lora.gflops_forward == pytest.approx(full.gflops_forward, rel=0.01)
    assert full.gflops_train > 1.5 * lora.gflops_train > lora.gflops_forward > 0
    assert full.peak_memory_mb > lora.peak_memory_mb > 0
    # process RSS of a real training step: full fine-tuning holds gradients and Adam moments
    # for every backbone weight, at least one more copy of the parameters than LoRA does
    lora_rss, full_rss = (training_rss(variant(name, pretrained=False), T, S)
                          for name in ("full", "full_finetune"))
    assert full_rss - lora_rss > full.total_params * 4 / 2**20 > 0
    assert cli(["model-info", "--size", str(S), "--frames", str(T), "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "full_finetune" in out and "trainable (M)" in out


# Cached trunk tokens are stored in float16. Bound: the logits from float16 tokens differ from
# the float32 path by at most 0.2 % of the largest |logit|. Measured on the demo's 8 trained
# folds (demo configuration, their own weights, every clip): at most 9.8e-4 of the largest
# logit (5.1e-3 absolute at logits up to 5.1), and no predicted class changed.
FP16_RELATIVE = 2e-3


@pytest.mark.parametrize("backbone,size", [("vit_small_patch14_dinov2", 56),
                                           ("vit_base_patch14_dinov2", 224)])
def test_float16_tokens_keep_logits_within_the_bound(backbone, size):
    """DinoV2-like token magnitudes (the residual stream's typical values ~10, a few massive-
    activation channels ~300) and a head whose logits are as large as a trained one's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        net = MERNet(ModelConfig(backbone=backbone, pretrained=False), C, size).eval()
    with torch.no_grad():
        net.classifier.weight.mul_(100.0)  # logits of a few units, as after training
    d, n = net.encoder.vit.embed_dim, 1 + (size // 14) ** 2
    g = torch.Generator().manual_seed(2)
    tokens = torch.randn(4, 8, n, d, generator=g) * 10
    tokens[..., :3] *= 30
    with torch.no_grad():
        exact = net(tokens=tokens)["logits"]
        half = net(tokens=tokens.half())["logits"]
    assert exact.abs().max() > 1.0
    assert (exact - half).abs().max() <= FP16_RELATIVE * exact.abs().max()


def test_float16_tokens_on_the_demo_configuration(tmp_path):
    """The demo configuration trained on its own float16 tokens (the trunk cache's) until its
    logits are several units: the float32 tokens give the same classes and logits within the
    bound."""
    from mer_ray.config import load_experiment
    from mer_ray.data.shards import SubjectReader
    from mer_ray.fitting.loop import training_step
    from mer_ray.model.build import build_model
    from mer_ray.model.encoder import RANDOM
    from mer_ray.model.inputs import clips_to_tensor
    from tests.helpers.shardfolder import write_shards

    exp = load_experiment("experiments/configs/demo.yaml")
    shards = write_shards(tmp_path, ("a", "b", "c", "d"), per_class=1, frames=exp.data.frames,
                          size=exp.data.size)
    clips = SubjectReader(shards.clips, shards.subjects())
    net = build_model(exp, C, RANDOM)
    with torch.no_grad():
        tok32 = net.trunk_tokens(clips_to_tensor(clips.columns["frames"]))
    tok16, y = tok32.half(), torch.tensor(clips.columns["label_id"])
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=exp.train.lr)
    loss = MERLoss(exp.loss)
    for _ in range(12):
        net.train()
        for i in range(0, len(y), 16):
            training_step(net, opt, loss, {"tokens": tok16[i:i + 16]}, y[i:i + 16])
    net.eval()
    with torch.no_grad():
        exact, half = net(tokens=tok32)["logits"], net(tokens=tok16)["logits"]
    assert exact.abs().max() > 2.0  # trained: logits of several units
    assert torch.equal(exact.argmax(1), half.argmax(1))
    assert (exact - half).abs().max() <= FP16_RELATIVE * exact.abs().max()


class Tokens:
    """An in-memory reader of trunk tokens (S=56: 17 tokens of ViT-S width)."""

    def __init__(self, n, scale, seed):
        g = np.random.default_rng(seed)
        self.batch = {"subject": np.array(["a"] * n), "clip": np.arange(n).astype(str),
                      "label_id": g.integers(0, C, n),
                      "tokens": (g.standard_normal((n, T, 17, 384)) * scale).astype(np.float16)}

    def iter_batches(self, batch_size, **kw):
        for i in range(0, len(self.batch["clip"]), batch_size):
            yield {k: v[i:i + batch_size] for k, v in self.batch.items()}


def test_bf16_autocast_trains_and_fp32_stays_exact():
    """bf16 autocast follows the float32 path's losses closely and learns; the float32 path is
    exactly repeatable. (bf16 matmuls are emulated on most CPUs, ~25x slower than float32:
    one batch of 8 clips per epoch keeps this short.)"""
    from mer_ray.config import ExperimentConfig
    from mer_ray.fitting.loop import _train_epoch, autocast_dtype
    from mer_ray.methods.mer.inputs import FoldInputs
    from mer_ray.model import MERLoss as Loss
    from mer_ray.model.build import build_model

    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    exp = ExperimentConfig().with_overrides(["data.size=56", "model.pretrained=false",
                                             "train.cache_trunk=true", "train.batch_size=8"])
    reader = Tokens(8, 1.0, 3)

    def train(amp, epochs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = build_model(exp, C)
        data = FoldInputs(net, exp, {"train": reader}, cpu)
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
        losses = [_train_epoch(net, opt, Loss(exp.loss), data, e, amp)["train_ce"]
                  for e in range(epochs)]
        return net, losses

    _, bf16 = train(torch.bfloat16, 5)
    a, fp32_a = train(None, 5)
    b, fp32_b = train(None, 5)
    assert fp32_a == fp32_b  # the fp32 path is exactly repeatable
    assert all(x > y for x, y in zip(bf16, bf16[1:]))  # it learns: every step lowers the loss
    assert bf16[-1] < 0.85 * bf16[0]
    assert bf16 == pytest.approx(fp32_a, abs=0.01)  # the same training, at bf16's precision
    tok = torch.from_numpy(reader.batch["tokens"][:4])
    with torch.no_grad():
        assert torch.equal(a.eval()(tokens=tok)["logits"], b.eval()(tokens=tok)["logits"])
        assert a(tokens=tok)["logits"].dtype == torch.float32


def test_target_clips_never_move_the_batch_statistics():
    """Domain adaptation with onset-relative input: the unlabelled target clips' forward pass
    inside a training step leaves BatchNorm's running statistics as the source batches set
    them (the target's forward uses them, never updates them)."""
    from mer_ray.config import ExperimentConfig
    from mer_ray.fitting.loop import _train_epoch
    from mer_ray.methods.mer.inputs import FoldInputs

    exp = ExperimentConfig().with_overrides(["data.size=56", "model.pretrained=false",
                                             "model.onset_relative=true",
                                             "train.cache_trunk=true", "train.batch_size=4"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mer_ray.model.build import build_model

        net = build_model(exp, C)
    readers = {"train": Tokens(8, 1.0, 0), "target": Tokens(8, 50.0, 1)}
    data = FoldInputs(net, exp, readers, torch.device("cpu"))
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    from mer_ray.model import MERLoss as Loss

    _train_epoch(net, opt, Loss(exp.loss), data, 0)
    bn = net.onset_norm
    # two source batches of 4 were counted; the two target batches beside them were not
    assert int(bn.num_batches_tracked) == 2


@pytest.mark.parametrize("bad", [{"cached_views": 0}, {"cached_views": 2},
                                 {"cached_views": 2, "cache_trunk": True, "augment": False}])
def test_cached_views_need_the_trunk_cache_and_augmentation(bad):
    with pytest.raises(ValueError, match="TrainConfig: cached_views"):
        TrainConfig(**bad)
    ok = TrainConfig(cached_views=2, cache_trunk=True)
    assert ok.views_id.startswith("v2-") and TrainConfig().views_id is None
    assert TrainConfig(cached_views=2, cache_trunk=True, seed=1).views_id != ok.views_id


def test_cpu_bf16_head_uses_three_step_attention(clips):
    """Under bfloat16 autocast on the CPU the LoRA blocks compute attention in three steps
    (the fused kernel's backward is slow there); in fp32 they use the fused kernel. Both give
    the same features within bf16's precision, and LoRA gets gradients either way."""
    net = make().train()
    tokens = net.trunk_tokens(clips)
    blocks = net.encoder.vit.blocks[net.encoder.split:]
    fp32 = net(tokens=tokens)["logits"]
    assert all(b.attn.fused_attn for b in blocks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = net(tokens=tokens)["logits"]
    assert not any(b.attn.fused_attn for b in blocks)
    assert bf16.dtype == torch.bfloat16
    assert torch.allclose(bf16.float(), fp32, atol=0.1, rtol=0.05)
    bf16.float().sum().backward()
    lora = [p for n, p in net.named_parameters() if "lora_B" in n]
    assert lora and all(p.grad is not None for p in lora)
    again = net(tokens=tokens)["logits"]  # fp32 again: the fused kernel, the same values
    assert all(b.attn.fused_attn for b in blocks) and torch.equal(again, fp32)


def test_bf16_on_a_cpu_without_bf16_units_is_said(monkeypatch):
    from mer_ray.fitting import device

    assert device.cpu_bf16_units("flags\t\t: fpu sse avx512f amx_bf16 amx_tile\n") is True
    assert device.cpu_bf16_units("flags\t\t: fpu sse avx2\n") is False
    assert device.cpu_bf16_units("processor\t: 0\n") is None
    monkeypatch.setattr(device, "cpu_bf16_units", lambda: False)
    with pytest.warns(UserWarning, match="emulated"):
        device.warn_if_bf16_emulated("bf16", use_gpu=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        device.warn_if_bf16_emulated("bf16", use_gpu=True)  # GPUs: nothing to say
        device.warn_if_bf16_emulated("fp32", use_gpu=False)
        monkeypatch.setattr(device, "cpu_bf16_units", lambda: True)
        device.warn_if_bf16_emulated("bf16", use_gpu=False)
