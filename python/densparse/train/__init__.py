"""Fine-tuning embedding models: training data, hard-negative mining (torch-free), and the
trainer (needs ``densparse[train]``).

``import densparse.train`` never imports torch: import the submodules you need, e.g.
``from densparse.train.mining import mine_hard_negatives`` or
``from densparse.train.data import read_jsonl, write_jsonl``.
"""
