"""DICOMweb on the wire, shared by the server and its clients: multipart bodies, STOW-RS client."""
