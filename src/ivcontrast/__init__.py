"""ivcontrast: detect intravenous contrast in CT series received over DICOM."""

__version__ = "0.1.0"
