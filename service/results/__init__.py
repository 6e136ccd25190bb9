"""Result writers: DICOM-SEG, RTSTRUCT, Comprehensive 3D SR and JSON measurements."""
