import pytest
import torch

from kitlib.models import BACKBONES, CosineLinear, create_model


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_parts_compose(name):
    torch.manual_seed(0)
    m = create_model(name, num_classes=5, small_input=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = m(x, out="all")
        fmap = m.features(x)
    assert out["fmap"].dim() == 4 and out["fmap"].shape[0] == 2  # the last conv map (channels = feature_dim after GAP)
    assert out["feat"].shape == (2, m.feature_dim)
    assert out["logits"].shape == (2, 5)
    assert torch.allclose(fmap, out["fmap"])
    assert torch.allclose(m.head(m.pool(fmap)), m(x), atol=1e-5)


def test_small_input_keeps_resolution():
    big = create_model("resnet18", 3).eval()
    small = create_model("resnet18", 3, small_input=True).eval()
    x = torch.randn(1, 3, 32, 32)
    assert big.features(x).shape[-1] == 1  # stride 32
    assert small.features(x).shape[-1] == 4  # stride 8


def test_cosine_head_bounded_and_reset():
    m = create_model("tiny_cnn", 4, head="cosine")
    assert isinstance(m.head, CosineLinear)
    logits = m(torch.randn(3, 3, 16, 16))
    assert logits.abs().max() <= 1 + 1e-5
    m.reset_head("linear")
    assert isinstance(m.head, torch.nn.Linear) and m.head.out_features == 4


def test_bad_names_and_offline_weights(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'"):
        create_model("resnet19", 3)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet18", 1)
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(self, *a, **k):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="pretrained=False"):
        create_model("resnet18", 3, pretrained=True)


def test_last_block_is_resnet_layer4_and_the_last_conv_elsewhere():
    from kitlib.train import ModelSpec

    r = ModelSpec("resnet18", 3).build()
    assert r.last_block() == [r.backbone[7]]
    assert sum(p.numel() for p in r.backbone[7].parameters()) == 8393728  # BasicBlock x2, 256 -> 512 channels
    t = ModelSpec("tiny_cnn", 3, width=8).build()
    assert [type(m).__name__ for m in t.last_block()] == ["Conv2d", "BatchNorm2d", "ReLU"]
