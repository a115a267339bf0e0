"""Published numbers the leaderboard places its measured rows beside, marked "published, not
measured here" wherever they are shown.

`MNIST_LINF_03`: the MNIST L-inf eps 0.3 table of AutoAttack's README (Croce & Hein; the
fra31/auto-attack repository, as shipped in the description of pyautoattack 0.2.0 on PyPI): per
defence, its clean accuracy, the robust accuracy its paper reported, and the robust accuracy under
standard AutoAttack, on all 10,000 MNIST test images, in percent. The goals set against these
figures are data too: goals.yaml (`goals.py`).
"""

from __future__ import annotations

SOURCE = ("AutoAttack README (Croce & Hein 2020, github.com/fra31/auto-attack, 'MNIST - Linf' table; shipped with "
          "pyautoattack 0.2.0): clean, reported and standard-AutoAttack robust accuracy at L-inf eps 0.3 on all 10,000 "
          "MNIST test images")

# (paper, link, clean, reported, AutoAttack)
MNIST_LINF_03 = (
    ("Gowal et al., 2020", "https://arxiv.org/abs/2010.03593", 99.26, 96.38, 96.34),
    ("Zhang et al., 2020a (CROWN-IBP)", "https://arxiv.org/abs/1906.06316", 98.38, 96.38, 93.96),
    ("Gowal et al., 2019", "https://arxiv.org/abs/1810.12715", 98.34, 93.78, 92.83),
    ("Zhang et al., 2019b (TRADES)", "https://arxiv.org/abs/1901.08573", 99.48, 95.60, 92.81),
    ("Ding et al., 2020", "https://openreview.net/forum?id=HkeryxBtPB", 98.95, 92.59, 91.40),
    ("Atzmon et al., 2019", "https://arxiv.org/abs/1905.11911", 99.35, 97.35, 90.85),
    ("Madry et al., 2018 (PGD-trained CNN)", "https://arxiv.org/abs/1706.06083", 98.53, 89.62, 88.50),
    ("Jang et al., 2019", "http://openaccess.thecvf.com/content_ICCV_2019/html/Jang_Adversarial_Defense_via_Learning_to_"
     "Generate_Diverse_Attacks_ICCV_2019_paper.html", 98.47, 94.61, 87.99),
    ("Wong et al., 2020 (FGSM with random start)", "https://arxiv.org/abs/2001.03994", 98.50, 88.77, 82.93),
    ("Taghanaki et al., 2019 (manifold mapping; retrained)", "http://openaccess.thecvf.com/content_CVPR_2019/html/"
     "Taghanaki_A_Kernelized_Manifold_Mapping_to_Diminish_the_Effect_of_Adversarial_CVPR_2019_paper.html",
     98.86, 64.25, 0.00),
)

# The best published robust accuracy per (norm, eps) (a fraction), for Tramèr's detection bound
# (`indicators.record_findings`): the highest AutoAttack accuracy of the table above.
BEST_ROBUST = {("linf", 0.3): max(row[4] for row in MNIST_LINF_03) / 100}
