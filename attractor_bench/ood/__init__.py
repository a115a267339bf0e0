"""OOD detection under attack (`attractor-bench ood <suite>`): every model given rejectors (its own
where its defence brings one, the reconstruction similarity where its defence reconstructs, the
maximum softmax probability and the energy score for all: `attractor_bench.rejectors`), attacked on their scores in both directions and jointly (the robust AUROC),
with pytorch-ood's metric names, the K+1 cross-check through ART's DetectorClassifier, synthetic
OOD sets and the accuracy/coverage curves.

Data flow: suite (`suite`) -> the models as `attractor-bench run` builds them (`runner.prepare`)
-> rejectors (`rejectors`) -> cells (`cells`: per-image scores, clean and under the score attacks
(`attacks`), in the one cell store) -> rows (`evaluate`,
metrics from `attractor_bench.metrics`) -> ood.csv, ood.json, README.md and figures (`report`). Its
own components (`ood.scores`, `ood.attacks`, `ood.evaluate`: attractor_bench/components.py): a bump
of one stales OOD runs, not classification runs.
"""
