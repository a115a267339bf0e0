"""The one rejector interface (attractor_bench.rejectors): outlier scores (higher = more OOD) as
pytorch-ood's detectors define them, the threshold fit, acceptance, and which defences bring one."""

import numpy as np
import pytest
import torch

from attractor_bench.config import DefenceSpec, RejectorSpec
from attractor_bench.defenses import AttractorDefence, PearsonRejector, pearson, rejector_of
from attractor_bench.models import AttractorNet
from attractor_bench.rejectors import Energy, MaxSoftmax, ReconstructionSimilarity, Rejector


@pytest.fixture
def logits():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))


def test_msp_and_energy_are_pytorch_oods_outlier_scores(logits, images):
    z = logits(torch.from_numpy(images)).detach().numpy().astype(np.float64)
    msp = np.exp(z).max(1) / np.exp(z).sum(1)
    np.testing.assert_allclose(MaxSoftmax(logits).score(images), -msp, rtol=1e-5)
    np.testing.assert_allclose(Energy(logits).score(images), -np.log(np.exp(z).sum(1)), rtol=1e-5)
    x = torch.from_numpy(images).requires_grad_(True)
    Energy(logits)(x).sum().backward()  # differentiable: the score attacks need it
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_fit_sets_the_lowest_threshold_that_accepts_the_share_asked(logits, images):
    r = MaxSoftmax(logits)
    with pytest.raises(ValueError, match="no threshold"):
        r.accept(images)
    r.fit(images, target_tpr=0.75)
    s = r.score(images)
    assert r.accept(images).tolist() == (s <= r.threshold).tolist()
    assert r.accept(images).sum() == 12  # 16 images, 75% accepted
    assert r.threshold == np.sort(s)[11]
    with pytest.raises(ValueError, match="target_tpr"):
        r.fit(images, target_tpr=0.0)


def test_the_attractors_rejector_is_a_reconstruction_similarity(images):
    torch.manual_seed(0)
    defence = AttractorDefence(AttractorNet().eval(), max_iter=2)
    r = rejector_of(defence, 0.8)
    assert isinstance(r, PearsonRejector) and r.name == "similarity"
    assert r.threshold == -0.8 and r.shown_threshold == 0.8  # the outlier score is minus the similarity
    generic = ReconstructionSimilarity(lambda x: defence.iterate(x)[0])
    np.testing.assert_allclose(r.score(images), generic.score(images), atol=1e-6)
    out = r.outputs(images)
    assert (out["score"] == r.score(images)).all() and np.isfinite(out["score_single"]).all()


def test_every_rejector_is_an_art_evasion_detector(logits, images):
    """ART code that takes an `EvasionDetector` takes a rejector: `detect` says OOD exactly where `accept`
    refuses, ART's `fit` signature fits the threshold, `set_params` / `get_params` reach it."""
    from art.defences.detector.evasion import EvasionDetector

    torch.manual_seed(0)
    attractor = PearsonRejector(AttractorDefence(AttractorNet().eval(), max_iter=2), similarity=0.8)
    for r in (MaxSoftmax(logits), attractor):
        assert isinstance(r, EvasionDetector)
        r.fit(images, np.zeros(len(images)), batch_size=5, nb_epochs=3, target_tpr=0.5)
        report, is_ood = r.detect(images, batch_size=7)
        assert is_ood.tolist() == (~r.accept(images)).tolist() and is_ood.sum() == 8
        assert report["threshold"] == r.threshold and (report["score"] == r.score(images, batch_size=7)).all()
        r.set_params(threshold=float(np.sort(report["score"])[-1]))  # accepts everything
        assert r.get_params() == {"threshold": r.threshold} and not r.detect(images)[1].any()


def test_the_readme_example_s_rejector_says_ood_below_the_similarity_threshold(images):
    """`PearsonRejector(defence, similarity=T).detect(x)[1]` is Pearson(G^n(x), x) < T, as the README's comment says."""
    torch.manual_seed(0)
    defence = AttractorDefence(AttractorNet().eval(), max_iter=2)
    x = torch.from_numpy(images)
    similarity = pearson(defence.iterate(x)[0], x).numpy()
    t = float(np.median(similarity))
    assert PearsonRejector(defence, similarity=t).detect(images)[1].tolist() == (similarity < t).tolist()


def test_which_defences_bring_a_rejector(logits):
    import rejecting_plugin

    assert rejector_of(None, 0.8) is None and rejector_of(torch.nn.Identity(), 0.8) is None
    plugin = rejecting_plugin.clip_with_rejector(logits)
    assert isinstance(rejector_of(plugin, 0.8), Rejector)  # an outside defence's own, its threshold its own
    assert rejector_of(plugin, 0.8).threshold is None

    class Wrong:
        def rejector(self):
            return "similarity"
    with pytest.raises(TypeError, match="not an attractor_bench.rejectors.Rejector"):
        rejector_of(Wrong(), 0.8)
    assert DefenceSpec("attractor").may_reject and not DefenceSpec("none", {}).may_reject
    assert DefenceSpec("x", {}, object(), "module:callable").may_reject  # outside: known once built


def test_the_suites_rejector_spec_fits_where_asked(logits, images):
    import rejecting_plugin

    plugin = rejecting_plugin.clip_with_rejector(logits)
    r = RejectorSpec(0.8, None).build(plugin, images)  # no threshold of its own: fitted at 95%
    assert r.accept(images).sum() == 16  # ceil(0.95 * 16) = 16
    r = RejectorSpec(None, 0.5).build(plugin, images)
    assert r.accept(images).sum() == 8
    assert RejectorSpec().build(None, images) is None
