"""discl's curriculum in other trainers (docs/training-loops.md), each an optional extra:

- ``discl.integrations.lightning.CurriculumDataModule``: PyTorch Lightning (``pip install 'discl[lightning]'``);
- ``discl.integrations.transformers.CurriculumTrainer``: Hugging Face Trainer (``pip install 'discl[hf-trainer]'``).

Both are thin layers over ``discl.CurriculumData``: the stages, rows and order of every epoch are its own.
"""
