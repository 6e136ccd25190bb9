"""DICOM networking (pynetdicom): the C-ECHO/C-STORE SCP and the C-STORE SCU for delivery."""
