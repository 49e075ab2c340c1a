"""Building a labelling set: the controls, the seeded order, the proxy, and every way SOURCE can be
named or be wrong."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advaug.attacks import UnrestrictedResult
from advaug.errors import ConfigError
from advaug.label import BuildOptions, LabelStore, open_or_build, resolve_source
from advaug.label.items import pick_real, png_bytes
from advaug.label.source import STUDY_UAE

from .conftest import CLASSES, ToyG, build, loaders, make_uae, real_split, write_attack_folder


def pixels(png: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and not im.text  # no metadata that could tell the kind
        return torch.from_numpy(np.array(im.convert("RGB")))


def quantised(x: torch.Tensor) -> torch.Tensor:
    return pixels(png_bytes(x))


def test_each_success_brings_a_clean_sample_and_a_real_image_of_its_class(tmp_path: Path):
    uae = make_uae(9, fail_every=4)  # rows 0, 4, 8 failed: 6 successes
    write_attack_folder(tmp_path / "a", uae)
    store = open_or_build(
        resolve_source(str(tmp_path / "a")), BuildOptions(loaders=loaders(), seed=3)
    )
    items = store.items()
    assert store.num_items == 18
    assert Counter(it.kind for it in items) == {"uae": 6, "gan": 6, "real": 6}
    for kind in ("uae", "gan", "real"):  # the same class mix in every kind
        assert Counter(it.source for it in items if it.kind == kind) == {0: 2, 1: 2, 2: 2}
    ok_rows = [i for i in range(9) if i % 4]
    g = ToyG()
    x_real, y_real, _ = real_split("")
    for it in items:
        png = store.image(it.id)
        if it.kind == "uae":
            assert it.origin_index in ok_rows and it.clf_pred == (it.source + 1) % 3
            assert torch.equal(pixels(png), quantised(uae.images[it.origin_index]))
        elif it.kind == "gan":  # G(z0, s): the clean sample of the same starting code
            row = it.origin_index
            clean = g(uae.z0[row : row + 1], uae.source[row : row + 1])[0].detach()
            assert torch.equal(pixels(png), quantised(clean))
        else:
            assert y_real[it.origin_index] == it.source
            assert torch.equal(pixels(png), quantised(x_real[it.origin_index]))
        assert it.proxy_pred == it.source  # the toy AC head reads the class stripe
    assert store.meta["proxy_kind"] == "ac" and store.meta["classes"] == CLASSES
    assert store.meta["uae_total"] == 9 and store.meta["uae_successes"] == 6


def test_the_order_is_seeded_and_mixes_kinds(tmp_path: Path):
    a = [it.kind for it in build(tmp_path / "a", n=12, seed=1).items()]
    b = [it.kind for it in build(tmp_path / "b", n=12, seed=1).items()]
    c = [it.kind for it in build(tmp_path / "c", n=12, seed=2).items()]
    assert a == b and a != c
    assert a != sorted(a, key=("uae", "gan", "real").index)


def test_real_images_are_drawn_without_replacement_while_the_class_lasts():
    labels = torch.tensor([0, 0, 0, 1, 1])
    idx = pick_real(torch.tensor([0, 0, 0, 1, 1, 1]), labels, seed=0)
    assert sorted(idx[:3].tolist()) == [0, 1, 2]
    assert sorted(idx[3:5].tolist()) == [3, 4] and idx[5].item() in (3, 4)
    with pytest.raises(ConfigError, match="no image of class 2"):
        pick_real(torch.tensor([2]), labels, seed=0)


def test_a_reference_classifier_is_the_proxy_when_given(tmp_path: Path):
    store = build(tmp_path / "a", n=6, reference=1)
    assert store.meta["proxy_kind"] == "reference"
    assert store.meta["proxy"].startswith("reference classifier const")
    assert {it.proxy_pred for it in store.items()} == {1}


def test_a_reference_named_in_the_uae_meta_is_the_proxy(tmp_path: Path):
    uae = make_uae(6)
    uae.meta["reference"] = "ref-run"
    write_attack_folder(tmp_path / "a", uae)
    store = open_or_build(resolve_source(str(tmp_path / "a")), BuildOptions(loaders=loaders(2)))
    assert store.meta["proxy"] == "reference classifier const (ref-run)"
    assert {it.proxy_pred for it in store.items()} == {2}


def test_max_uae_takes_a_seeded_subset(tmp_path: Path):
    a = build(tmp_path / "a", n=12, max_uae=4, seed=5)
    b = build(tmp_path / "b", n=12, max_uae=4, seed=5)
    rows = sorted(it.origin_index for it in a.items() if it.kind == "uae")
    assert len(rows) == 4 and rows == sorted(
        it.origin_index for it in b.items() if it.kind == "uae"
    )


def test_an_existing_set_is_reused_and_a_changed_uae_file_refused(tmp_path: Path):
    store = build(tmp_path / "a")
    store.answer("alice", 0, 1)
    src = resolve_source(str(tmp_path / "a" / "uae.safetensors"))
    again = open_or_build(src, BuildOptions(loaders=loaders()))
    assert again.path == store.path and len(again.answers()) == 1
    make_uae(6, seed=99).save(tmp_path / "a" / "uae.safetensors")
    with pytest.raises(ConfigError, match="changed since its labelling set"):
        open_or_build(src, BuildOptions(loaders=loaders()))


def test_study_folders_use_the_transfer_set_and_their_runs(tmp_path: Path):
    study = tmp_path / "study"
    (study / "reference").mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({"name": "s"}))
    with pytest.raises(ConfigError, match="has no eval/transfer-uae.safetensors"):
        resolve_source(str(study))
    uae = make_uae(6)
    uae.meta.pop("gan")  # a study's transfer set does not name its GAN: it is <study>/gan
    uae.save(study / STUDY_UAE)
    src = resolve_source(str(study))
    assert src.kind == "study" and src.db == study / "labels" / "transfer-uae.sqlite"
    assert (src.gan, src.reference) == (str(study / "gan"), str(study / "reference"))
    with pytest.raises(ConfigError, match=r"\(.*gan\) is not there; pass --gan"):
        open_or_build(src, BuildOptions(loaders=loaders(2)))
    (study / "gan").mkdir()
    store = open_or_build(src, BuildOptions(loaders=loaders(2)))
    assert store.meta["proxy_kind"] == "reference" and store.meta["source_kind"] == "study"
    assert isinstance(LabelStore(src.db), LabelStore)


def test_bad_sources_are_refused_with_the_fix(tmp_path: Path):
    with pytest.raises(ConfigError, match="not a UAE set, a study folder or a labelling set"):
        resolve_source(str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="holds no uae.safetensors"):
        resolve_source(str(tmp_path))
    with pytest.raises(ConfigError, match="no labelling set at"):
        resolve_source(str(tmp_path / "x.sqlite"))
    failed = make_uae(3, fail_every=1)
    write_attack_folder(tmp_path / "f", failed)
    with pytest.raises(ConfigError, match="no successful UAE"):
        open_or_build(resolve_source(str(tmp_path / "f")), BuildOptions(loaders=loaders()))
    nogan = make_uae(3)
    nogan.meta.pop("gan")
    nogan.save(tmp_path / "g" / "uae.safetensors")
    with pytest.raises(ConfigError, match="does not name the GAN that made it; pass --gan"):
        open_or_build(resolve_source(str(tmp_path / "g")), BuildOptions(loaders=loaders()))
    assert not (tmp_path / "g" / "labels").exists()


def test_a_gan_that_does_not_fit_is_refused(tmp_path: Path):
    big = make_uae(4)
    big = UnrestrictedResult(**{n: getattr(big, n) for n in big._TENSORS}, meta=big.meta)
    big.source = torch.tensor([0, 1, 2, 5])
    write_attack_folder(tmp_path / "a", big)
    with pytest.raises(ConfigError, match="does not fit"):
        open_or_build(resolve_source(str(tmp_path / "a")), BuildOptions(loaders=loaders()))
