"""Helpers shared by the tests and the benchmarks: DICOM factories, harnesses that start
the node, Orthanc and PostgreSQL, and filled stores. Imported as ``tests.support.<module>``."""
