"""Contrast classification of CT volumes, independent of networking and the database.

Modules, one job each:

- ``volume``: HU volumes with their geometry, the ``SliceSource`` protocol, NIfTI and NRRD readers
- ``dicom_series``: a DICOM series read header-first, sorted along the slice normal, decoded lazily
- ``sources``: open whatever a user points at (DICOM files or folder, NIfTI, NRRD)
- ``preprocess``: the one preprocessing used by training and inference
- ``networks``: MONAI 2D EfficientNet B0-B4 with a one-logit head (needs torch)
- ``package``: the model package on disk (ONNX + safetensors + card), export and verified loading
- ``backends``: ONNX Runtime (CPU) and PyTorch (CUDA) inference, chosen in one place
- ``aggregate``: slice probabilities to one scan probability
- ``engine``: ``Classifier``: pre-process -> predict -> post-process
- ``pipeline``: the one classification pipeline (the worker and ``ivcontrast classify``):
  prepared series, prepare-ahead, and the call as one row shape (``SeriesCall``)
- ``tags``: the ContrastBolusAgent tag compared with the call

Nothing here imports torch unless a torch-only function is called.
"""
