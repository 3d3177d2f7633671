"""Training, evaluation and export of contrast models, on labelled CT or synthetic phantoms.

Modules, one job each:

- ``datasets``: labelled series from a labels CSV (DICOM folders, NIfTI, NRRD) or a synth manifest
- ``split``: train/validation split by patient (no patient on both sides)
- ``cache``: the slice cache: each series' preprocessed model input on disk, keyed by the
  preprocessing config and the files' identity, so epochs never decode DICOM again
- ``synthetic``: phantom series for training, generated straight into the cache
- ``augment``: geometric and HU-faithful intensity augmentation of model inputs (needs torch)
- ``loop``: the train loop: early stopping, checkpoints, resume, fine-tuning (needs torch)
- ``metrics``: AUC with bootstrap CIs, threshold metrics, Youden, calibration (numpy only)
- ``evaluation``: a model package on labelled data: predictions, metrics, tag agreement, report
- ``plots``: ROC, calibration, slice-probability and training-history figures (matplotlib, Agg)
- ``export``: a training checkpoint to a model package, with its card

Training reuses ``ivcontrast.classifier.preprocess``: one preprocessing for training and serving.
"""
